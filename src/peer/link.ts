/*
 * PeerLink: the state one Peer's parts share (src/peer/*.ts), and the few operations
 * every part needs. Peer thread only; module-private (Peer holds it in a # field).
 *
 * Holds the views of the peer's own memory from its ticket: the IN control words, the
 * descriptor ring (read here: this thread is its single consumer), the doorbell and this
 * peer's bell, and the ticket's layout numbers that the other parts need when they are
 * made (Peer makes them at first use: an idle peer has only this object and its view). Owns the peer's open/closed flags, the request id counter, the descriptor
 * tail's batched publication, and the scratch words that the release batch and small
 * requests share (one allocation per peer).
 *
 * Who writes what: `closed` is set by Peer.close(), `coordinatorGone` by this thread's
 * death watch (src/peer/watch.ts) when the coordinator's end closes; every other field
 * is fixed after construction or written only here.
 */

import {
  DESC_SLOT_BYTES, CTL_STATE, CTL_ACKED, STATE_OPEN, RING_HEAD, RELEASE_BATCH, CTL_BELL, BELL_COUNTER, BELL_MAP, BELL_CONTROL,
} from '../../shared/layout.js';
import { SlotRingReader } from '../../shared/ring.js';
import { BusError } from '../errors.js';
import type { PeerTicket } from '../ticket.js';
import type { ThreadWatch, WatchedLink, SegmentLetter } from './watch.js';

/** Receipts published together (see consumed()). */
const TAIL_BATCH = 32;

/**
 * One Int32Array per doorbell buffer in this thread: the peers a bus mints here share its
 * doorbell object, so they share the view too (a ticket that came by message has its own
 * buffer object, and gets its own view).
 */
const doorbellViews = new WeakMap<SharedArrayBuffer, Int32Array>();

function doorbellView(sab: SharedArrayBuffer): Int32Array {
  let view = doorbellViews.get(sab);
  if (view === undefined) doorbellViews.set(sab, view = new Int32Array(sab));
  return view;
}

export class PeerLink implements WatchedLink {
  readonly ctl: Int32Array;
  readonly inSab: SharedArrayBuffer;
  #inI32: Int32Array | null = null;
  readonly doorbell: Int32Array;
  /** The ticket's layout (shared/layout.ts), for the parts made later (src/peer/outbox.ts, acks.ts). */
  readonly outOffset: number;
  readonly outRingBytes: number;
  readonly verdictOffset: number;
  readonly #descriptorOffset: number;
  readonly #descriptorSlots: number;
  /** Made at first use: a peer that never receives or waits has no ring reader (and reads no page of it). */
  #desc: SlotRingReader | null = null;
  #scratch: Int32Array | null = null;
  /** Word and bit of this peer's bell in the doorbell's bell map (word < 0: none). */
  readonly bellWord: number;
  readonly bellBit: number;
  readonly maxMessageBytes: number;
  readonly peerId: number;
  /** This thread's death watch for the bus, and this peer's place in it (null once closed). */
  #watch: ThreadWatch | null;
  #watchRef: WeakRef<WatchedLink> | null;
  closed = false;
  coordinatorGone = false;
  #nextReq = 1;
  #unpublished = 0;

  /** `ctl`: the control block (Peer.open made it to claim the ticket). */
  constructor(m: PeerTicket, watch: ThreadWatch, ctl: Int32Array) {
    this.inSab = m.inSab;
    this.ctl = ctl;
    this.outOffset = m.outOffset;
    this.outRingBytes = m.outRingBytes;
    this.verdictOffset = m.verdictOffset;
    this.#descriptorOffset = m.descriptorOffset;
    this.#descriptorSlots = m.descriptorSlots;
    this.doorbell = doorbellView(m.doorbell);
    const bell = Atomics.load(this.ctl, CTL_BELL);
    this.bellWord = bell >= 0 ? BELL_MAP + (bell >> 5) : -1;
    this.bellBit = bell >= 0 ? 1 << (bell & 31) : 0;
    this.maxMessageBytes = m.maxMessageBytes;
    this.peerId = m.peerId;
    this.#watch = watch;
    this.#watchRef = watch.gone ? null : watch.add(this);
    if (watch.gone) this.coordinatorGone = true;
  }

  /** The whole buffer as Int32 (the first pool segment's words), made at first use. */
  get inI32(): Int32Array {
    return this.#inI32 ??= new Int32Array(this.inSab, 0, this.inSab.byteLength >> 2);
  }

  /** The descriptor ring, this thread its single consumer. */
  get desc(): SlotRingReader {
    return this.#desc ??= new SlotRingReader(this.inSab, this.#descriptorOffset, this.#descriptorSlots, DESC_SLOT_BYTES);
  }

  /** The release batch (2 + RELEASE_BATCH words) and a small request body (2 words), in one buffer. */
  get scratch(): Int32Array {
    return this.#scratch ??= new Int32Array(2 + RELEASE_BATCH + 2);
  }

  /** The coordinator thread is gone: every wait of this peer ends. */
  coordinatorGoneNow(): void {
    this.coordinatorGone = true;
    Atomics.notify(this.ctl, CTL_ACKED);
    // Nothing waits on a ring that was never made.
    if (this.#desc !== null) Atomics.notify(this.#desc.ctl, RING_HEAD);
  }

  /** Peer.close(): the thread's watch no longer needs to tell this peer anything. */
  detach(): void {
    if (this.#watchRef !== null) this.#watch?.forget(this.#watchRef, this.peerId);
    this.#watch = null;
    this.#watchRef = null;
  }

  /** The next pool segment posted for this peer (src/peer/pool-map.ts); undefined if none yet, or closed. */
  takeSegment(): SegmentLetter | undefined {
    return this.#watch?.takeSegment(this.peerId);
  }

  /**
   * Ask the coordinator for a turn of its event loop now (it posts waiting pool segments
   * there: src/coordinator/segment-mail.ts). BELL_CONTROL is only a hint, which any peer
   * may set: the worst it can do is make the coordinator look at its events early.
   */
  askControlTurn(): void {
    const db = this.doorbell;
    Atomics.store(db, BELL_CONTROL, 1);
    Atomics.add(db, BELL_COUNTER, 1);
    Atomics.notify(db, BELL_COUNTER, 1);
  }

  /** True until close(), disconnection by the coordinator, or bus shutdown. */
  isOpen(): boolean {
    return !this.closed && !this.coordinatorGone && Atomics.load(this.ctl, CTL_STATE) === STATE_OPEN;
  }

  /** The id the next request will take: it moves whenever this peer sends or asks anything. */
  get nextReq(): number {
    return this.#nextReq;
  }

  takeReq(): number {
    const id = this.#nextReq;
    this.#nextReq = (id + 1) >>> 0 || 1;
    return id;
  }

  /**
   * Called after publishing when the coordinator said it does not poll this OUT ring:
   * ring this peer's bell and the doorbell (shared/layout.ts, Doorbell). Always both: a
   * "coordinator sleeps" word that peers trusted could be cleared by any one of them.
   */
  kick(): void {
    const db = this.doorbell;
    if (this.bellWord >= 0) Atomics.or(db, this.bellWord, this.bellBit);
    Atomics.add(db, BELL_COUNTER, 1);
    Atomics.notify(db, BELL_COUNTER, 1);
  }

  /**
   * Receipts (the descriptor tail) are published in batches: the tail's cache line is
   * read by the coordinator, and writing it per message would bounce it between cores.
   * It is published before anything the coordinator must see in order after it (a
   * release, a request naming a handle that arrived in a message), when the batch is
   * full, when this thread is about to wait, and at the end of the current task (the
   * inbox, the only caller, queues that flush with its releases').
   */
  consumed(): void {
    if (++this.#unpublished >= TAIL_BATCH) this.publishTail();
  }

  publishTail(): void {
    if (this.#unpublished === 0) return;
    this.#unpublished = 0;
    this.desc.release();
  }
}

export function shutdown(what: string): BusError {
  return new BusError('ESHUTDOWN', `${what}: the peer is closed or the bus is shut down`);
}

export function invalid(msg: string): BusError {
  return new BusError('EINVAL', msg);
}

export function checkHandleId(h: unknown, what: string): number {
  if (typeof h !== 'number' || !Number.isInteger(h) || h <= 0 || h > 0xffffffff) {
    throw invalid(`${what}: ${String(h)} is not a handle id (a positive integer)`);
  }
  return h;
}
