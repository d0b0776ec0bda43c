/*
 * PoolMap: where a pool address is in this peer's memory. Peer thread only;
 * module-private (the Inbox holds it).
 *
 * The coordinator's pool (src/coordinator/pool.ts) is an address space whose windows
 * get memory on first use. The window at address 0 is the tail of the IN buffer; every
 * other one is a SharedArrayBuffer posted on this thread's watch
 * (src/peer/watch.ts; src/coordinator/segment-mail.ts) as { peer, segment: address, sab },
 * normally before the descriptor that names it is published. So when a descriptor names
 * an address not mapped yet, its segment is usually queued on the port already, and
 * receiveMessageOnPort takes it synchronously: in recvSync, in an async recv, in a
 * worker or in the main thread alike. Right after the peer opened, the coordinator may
 * not know this thread yet (the thread's watch travels through Node's main thread,
 * src/peer/watch.ts); the segment then comes later. segmentAt() never waits for it: it
 * says the segment is late (null), and the caller waits as its kind of receive may
 * (src/peer/inbox.ts napSync, napAsync): recvSync() in short blocking naps, recv() and the
 * everyday layer on the event loop, tryRecv() not at all. A late segment is given up on (ETIMEDOUT) after
 * SEGMENT_WAIT_MS, or at once if the peer is shut down (ESHUTDOWN).
 *
 * Segments are never unmapped (the coordinator keeps them too), so a Message's view
 * stays valid until it is released, and after. Lookup is by SEGMENT_BYTES granule; a
 * segment larger than one granule is entered under each of its granules. The last one
 * used is cached: consecutive messages mostly land in one segment. So is the last view of
 * each slot (view()).
 */

import { receiveMessageOnPort } from 'node:worker_threads';
import { SEGMENT_BYTES, SEGMENT_SHIFT } from '../../shared/layout.js';
import { BusError } from '../errors.js';
import type { PeerLink } from './link.js';

/** Longest wait for a segment that a descriptor names (a live coordinator posts it within a turn of its loop). */
const SEGMENT_WAIT_MS = 10_000;

/** Pool address `a` is byte `a + delta` of `sab` (and of `i32`, in words). */
export interface PeerSegment {
  readonly sab: SharedArrayBuffer;
  readonly i32: Int32Array;
  readonly delta: number;
  /** The last view made of each slot, by its start within its granule (view()); made at the first. */
  views: Array<Uint8Array | undefined> | null;
}

/** Slot starts are multiples of the smallest slice (64 bytes) within a granule. */
const VIEW_SHIFT = 6;

export class PoolMap {
  readonly #link: PeerLink;
  readonly #firstOffset: number;
  /** Granule -> segment, for segments that came on the port (made on first need). */
  #byGranule: Map<number, PeerSegment> | null = null;
  #lastGranule = -1;
  #last: PeerSegment | null = null;
  /** The first segment (the tail of the peer's buffer), made at its first use and kept. */
  #firstSeg: PeerSegment | null = null;
  /** When a segment was first found late (performance.now()), or -1: none is late. */
  #lateSince = -1;

  constructor(link: PeerLink, firstOffset: number) {
    this.#link = link;
    this.#firstOffset = firstOffset;
  }

  /**
   * The segment holding pool address `address`, taking newly posted segments off the port
   * if needed; null when it has not come yet (late: see the top of this file). Throws
   * ESHUTDOWN, or ETIMEDOUT once a segment has been late for SEGMENT_WAIT_MS.
   */
  segmentAt(address: number): PeerSegment | null {
    const g = address >>> SEGMENT_SHIFT;
    if (g === this.#lastGranule) return this.#last!;
    let seg = g === 0 ? this.#first() : this.#byGranule?.get(g);
    while (seg === undefined) {
      if (!this.#takeOne()) return this.#late();
      seg = this.#byGranule!.get(g);
    }
    this.#lateSince = -1;
    this.#lastGranule = g;
    this.#last = seg;
    return seg;
  }

  /** True while the last segmentAt() found its segment late. */
  get late(): boolean {
    return this.#lateSince >= 0;
  }

  #late(): null {
    const link = this.#link;
    if (!link.isOpen()) {
      throw new BusError('ESHUTDOWN', 'recv: a message names a pool segment that never arrived (the coordinator is gone or the peer closed)');
    }
    const now = performance.now();
    if (this.#lateSince < 0) {
      this.#lateSince = now;
      // The segment may wait in the coordinator for this thread's watch, which its event loop takes in.
      link.askControlTurn();
    } else if (now - this.#lateSince > SEGMENT_WAIT_MS) {
      this.#lateSince = -1;
      throw new BusError('ETIMEDOUT', `recv: a message names a pool segment that did not arrive within ${SEGMENT_WAIT_MS} ms`);
    }
    return null;
  }

  #first(): PeerSegment {
    const link = this.#link;
    return this.#firstSeg ??= { sab: link.inSab, i32: link.inI32, delta: this.#firstOffset, views: null };
  }

  /**
   * A view of the `bytes` bytes at pool address `address` in `seg` (segmentAt's answer).
   * A slot's view is kept and given again while the slot's messages keep its length: a
   * steady stream reuses its slots (the coordinator's pool is LIFO), so most messages
   * need no new Uint8Array. Only a released message's view can be given again (a slot is
   * reused only after its release), and it shows the same memory the new one does.
   */
  view(seg: PeerSegment, address: number, bytes: number): Uint8Array {
    // Slot starts are 64-aligned; anything else (this peer scribbled on its own ring) gets a view of its own.
    if ((address & ((1 << VIEW_SHIFT) - 1)) !== 0) return new Uint8Array(seg.sab, address + seg.delta, bytes);
    const views = seg.views ??= [];
    const i = (address & (SEGMENT_BYTES - 1)) >>> VIEW_SHIFT;
    // Grown to the highest slot used, densely (a segment of large slots needs one entry).
    while (views.length <= i) views.push(undefined);
    let v = views[i];
    if (v === undefined || v.length !== bytes) views[i] = v = new Uint8Array(seg.sab, address + seg.delta, bytes);
    return v;
  }

  /**
   * Map the next segment posted for this peer, if one is on the port: false when none is.
   * It is normally there already; it may still be with the coordinator if this thread's
   * watch had not reached it when the segment was made (segment-mail.ts).
   */
  #takeOne(): boolean {
    const m = this.#link.takeSegment();
    if (m === undefined) return false;
    const address = m.segment;
    const sab = m.sab;
    if (typeof address !== 'number' || !Number.isInteger(address) || address <= 0 || address % SEGMENT_BYTES !== 0
      || !(sab instanceof SharedArrayBuffer) || sab.byteLength === 0) {
      throw new BusError('EINVAL', 'recv: the coordinator posted something that is not a pool segment on this peer\'s port');
    }
    const seg: PeerSegment = { sab, i32: new Int32Array(sab, 0, sab.byteLength >> 2), delta: -address, views: null };
    const map = this.#byGranule ??= new Map();
    const end = address + sab.byteLength;
    for (let a = address; a < end; a += SEGMENT_BYTES) map.set(a >>> SEGMENT_SHIFT, seg);
    return true;
  }
}
