/*
 * The owner's list of the peers it minted tickets for, kept so that the owner can shut
 * them all down itself when the coordinator thread dies (an uncaught error in it, or
 * terminate()). While the coordinator lives it alone writes a peer's state; once its
 * thread is gone nobody would, and a peer blocked in Atomics.wait (recvSync, a
 * synchronous request) never sees its port close, since that needs its event loop.
 *
 * Invariants:
 *   - the owner writes a peer's CTL_STATE only after the coordinator's 'exit' (no other
 *     writer is left), and only from STATE_OPEN (compare-and-swap): a peer that closed or
 *     was cut off keeps its own state;
 *   - only per-peer memory is written, never the doorbell every peer shares: a hostile
 *     peer can forge anything there, so "the coordinator is dead" may not live there;
 *   - entries whose peer is no longer open are pruned as new ones are added, so the list
 *     stays bounded by the live peers (amortised: a pass when it has doubled);
 *   - an entry is the peer's buffers and two offsets, nothing more: the views are made only when they
 *     are used (pruning, shutDownAll), since three typed arrays per peer cost the owner
 *     memory and collection time for every peer it mints.
 */

import {
  CTL_STATE, CTL_ACKED, STATE_OPEN, STATE_BUS_CLOSED, RING_HEAD, RING_TAIL, RING_HEADER_BYTES,
} from '../shared/layout.js';

interface PeerBuffers {
  inSab: SharedArrayBuffer;
  ctlSab: SharedArrayBuffer;
  descriptorOffset: number;
  outOffset: number;
}

const ctlOf = (p: PeerBuffers) => new Int32Array(p.ctlSab);

export class PeerRegistry {
  #peers: PeerBuffers[] = [];
  #pruneAt = 16;

  /** Remember a new peer; returns how many peers that are gone this call dropped from the list. */
  add(inSab: SharedArrayBuffer, ctlSab: SharedArrayBuffer, descriptorOffset: number, outOffset: number): number {
    this.#peers.push({ inSab, ctlSab, descriptorOffset, outOffset });
    if (this.#peers.length < this.#pruneAt) return 0;
    const before = this.#peers.length;
    this.#peers = this.#peers.filter((p) => Atomics.load(ctlOf(p), CTL_STATE) === STATE_OPEN);
    this.#pruneAt = Math.max(16, 2 * this.#peers.length);
    return before - this.#peers.length;
  }

  /** The coordinator is gone: every peer still open is shut down, and every wait it may be in is woken. */
  shutDownAll(): void {
    for (const p of this.#peers) {
      const ctl = ctlOf(p);
      if (Atomics.compareExchange(ctl, CTL_STATE, STATE_OPEN, STATE_BUS_CLOSED) !== STATE_OPEN) continue;
      Atomics.notify(ctl, CTL_ACKED);
      Atomics.notify(new Int32Array(p.inSab, p.descriptorOffset, RING_HEADER_BYTES / 4), RING_HEAD);
      Atomics.notify(new Int32Array(p.inSab, p.outOffset, RING_HEADER_BYTES / 4), RING_TAIL);
    }
    this.#peers = [];
  }
}
