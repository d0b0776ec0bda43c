/*
 * SegmentMail: how a peer's pool segments (src/coordinator/pool.ts) reach it.
 * Coordinator thread only.
 *
 * A segment is a SharedArrayBuffer, so it can only travel by postMessage. It goes on the
 * death watch of the thread that opened its peer (src/peer/watch.ts: one MessagePort per
 * peer thread and bus, whose other end stays in that thread), tagged with the peer's id;
 * the peer takes it synchronously with receiveMessageOnPort when a descriptor names an
 * address it has not mapped (src/peer/pool-map.ts). So no peer needs a channel of its own.
 *
 * The coordinator may not know that thread yet: the ticket is not opened, or its thread's
 * watch is still on its way (Node routes it through the main thread). Such segments wait
 * here, per peer and in order, and go as soon as the peer's CTL_OPENED names a thread
 * whose watch has arrived: when a watch arrives (threadKnown), and at every turn of the
 * coordinator to its event loop (flushPending); a peer that waits for a segment asks for
 * that turn at once (BELL_CONTROL). A descriptor can therefore name a segment that is
 * still here; the peer waits for it, bounded (pool-map.ts).
 *
 * Isolation: a segment is posted only to the port of the thread that the peer's own
 * CTL_OPENED word names, and the thread behind a port is the one Node named when the
 * watch arrived. A peer that writes another thread into its word sends its own segments
 * there, where they are dropped (that thread has no such peer open): it exposes nothing
 * of anyone else.
 *
 * Invariants: a peer's segments are posted in the order they were made; a peer is in
 * `pending` exactly while it has segments waiting here; a peer cut off is dropped
 * (forget), and so are its waiting segments.
 */

import type { MessagePort } from 'node:worker_threads';
import { CTL_OPENED } from '../../shared/layout.js';

/** What the mail needs of a peer (PeerState, structurally: no import circle). */
export interface MailPeer {
  readonly id: number;
  readonly ctl: Int32Array;
  /** Segments made but not posted yet, in order (address, buffer, address, buffer...). */
  segmentsWaiting: Array<number | SharedArrayBuffer> | null;
}

/** The message a segment travels in (src/peer/watch.ts reads it). */
export interface SegmentLetter {
  peer: number;
  segment: number;
  sab: SharedArrayBuffer;
}

export class SegmentMail {
  /** CTL_OPENED value (threadId + 1) -> that thread's watch. */
  readonly #threads = new Map<number, MessagePort>();
  readonly #pending = new Set<MailPeer>();

  /** A new segment of `peer`: posted now if its thread is known, or kept until it is. */
  send(peer: MailPeer, address: number, sab: SharedArrayBuffer): void {
    if (peer.segmentsWaiting === null) {
      const port = this.#portOf(peer);
      if (port !== undefined) {
        port.postMessage({ peer: peer.id, segment: address, sab } satisfies SegmentLetter);
        return;
      }
      peer.segmentsWaiting = [];
      this.#pending.add(peer);
    }
    peer.segmentsWaiting.push(address, sab);
  }

  /** Thread `source`'s watch arrived: its peers' waiting segments can go. */
  threadKnown(source: number, port: MessagePort): void {
    this.#threads.set(source + 1, port);
    this.flushPending();
  }

  /** Thread `source` is gone (its peers are cut off, and forgotten, by the caller). */
  threadGone(source: number, port: MessagePort): void {
    if (this.#threads.get(source + 1) === port) this.#threads.delete(source + 1);
  }

  /** Post every waiting segment whose peer's thread is known now. O(peers waiting). */
  flushPending(): void {
    if (this.#pending.size === 0) return;
    for (const peer of this.#pending) {
      const port = this.#portOf(peer);
      if (port === undefined) continue;
      const w = peer.segmentsWaiting!;
      for (let i = 0; i < w.length; i += 2) {
        port.postMessage({ peer: peer.id, segment: w[i] as number, sab: w[i + 1] as SharedArrayBuffer } satisfies SegmentLetter);
      }
      peer.segmentsWaiting = null;
      this.#pending.delete(peer);
    }
  }

  /** `peer` is cut off: nothing more goes to it. */
  forget(peer: MailPeer): void {
    if (peer.segmentsWaiting === null) return;
    peer.segmentsWaiting = null;
    this.#pending.delete(peer);
  }

  /** The bus is closing. */
  clear(): void {
    for (const peer of this.#pending) peer.segmentsWaiting = null;
    this.#pending.clear();
    this.#threads.clear();
  }

  #portOf(peer: MailPeer): MessagePort | undefined {
    const opened = Atomics.load(peer.ctl, CTL_OPENED);
    return opened === 0 ? undefined : this.#threads.get(opened);
  }
}
