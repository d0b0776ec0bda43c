/*
 * Receipts: what peers give back (coordinator thread only). A peer's descriptor tail
 * moving past a message is its receipt (bus1 RECV: the sender's in-flight share is
 * committed, PeerState.syncConsumed); SLICE_RELEASE gives the slice and its charge back.
 *
 * Both read peer-written memory, so both are validated: a peer whose tail is impossible
 * is condemned (cut off after the round), a release of something that is not a received
 * slice is a protocol violation (the caller disconnects).
 *
 * checkOrSync: a quota check that syncs the receiver's receipts before refusing, so that
 * a refusal is never caused by stale numbers.
 */

import type { PeerState } from './peer-state.js';
import { E_DQUOT, type CoordinatorCore } from './core.js';

export class Receipts {
  constructor(readonly core: CoordinatorCore) {}

  /** Account receipts of `peer`; a peer whose tail is impossible is condemned. */
  syncPeer(peer: PeerState): void {
    const core = this.core;
    if (core.inRun(peer)) core.flushRun();
    if (peer.open && !peer.syncConsumed()) core.condemned.push(peer);
  }

  checkOrSync(target: PeerState, senderUid: number, m: number, h: number, b: number): boolean {
    const core = this.core;
    for (let attempt = 0; attempt < 2; attempt++) {
      const cs = core.charges;
      cs.reset(senderUid);
      cs.add(target.user.ledger, m, h, b);
      cs.add(target.ledger, m, h, b);
      const refused = cs.check();
      if (refused === null) return true;
      if (attempt === 0) {
        for (const p of target.user.peers) this.syncPeer(p);
        continue;
      }
      core.fail(E_DQUOT, 0, refused.resource, refused.ledger.owner);
    }
    return false;
  }

  /** SLICE_RELEASE of a received slice (the caller synced receipts first). False: not a received slice. */
  releaseSlice(peer: PeerState, offset: number): boolean {
    const bytes = this.freeSlice(peer, offset);
    if (bytes < 0) return false;
    peer.user.ledger.release(1, 0, bytes);
    peer.ledger.release(1, 0, bytes);
    return true;
  }

  /** Free a received slice; returns the bytes it was charged (for the caller to release), or -1 if it is not one. */
  freeSlice(peer: PeerState, offset: number): number {
    return peer.pool.freeReceived(offset);
  }
}
