/*
 * Disconnects: PEER_DISCONNECT and bus shutdown (bus1 peer.c; coordinator thread only).
 *
 * Cutting a peer off gives everything back: its nodes are destroyed in one transaction
 * (holders told), its queued messages are discharged (the senders' shares included),
 * its received slices and handles released, its bell freed; then its state word says
 * why (closed, disconnected with a reason, bus closed). Idempotent. `condemned` peers
 * (an impossible tail, too much held back) are cut off here once the round is over.
 */

import {
  STATE_DISCONNECTED, STATE_BUS_CLOSED, REASON_PROTOCOL, REASON_NONE, BELL_COUNTER,
} from '../../shared/layout.js';
import { HANDLES } from './ledger.js';
import { SLOT_QUEUED } from './pool.js';
import type { PeerState } from './peer-state.js';
import type { CoordinatorCore } from './core.js';
import type { Bells } from './bells.js';
import type { Handles } from './handles.js';

export class Disconnects {
  constructor(readonly core: CoordinatorCore, readonly bells: Bells, readonly handles: Handles) {}

  /**
   * PEER_DISCONNECT: destroy the peer's nodes in one transaction, drop its queue (giving
   * every charge back), release its handles, and cut it off. Idempotent.
   */
  disconnect(peer: PeerState, state: number, reason: number): void {
    const core = this.core;
    if (!peer.open) return;
    core.flushRun();
    peer.syncConsumed();
    core.waiters.forget(peer);
    core.names.delete(peer.id);
    // Closed first, so that its own nodes' destruction queues nothing to it.
    peer.open = false;
    this.handles.destroyNodes([...peer.ownedNodes]);
    // Queued, unreceived messages: everything given back, the sender's share included.
    for (let pos = peer.syncedTail; pos !== peer.desc.position; pos = (pos + 1) >>> 0) {
      const i = peer.fifoIndex(pos);
      const slot = peer.fifoSlot[i];
      if (slot >= 0 && peer.pool.stateOf(slot) === SLOT_QUEUED) {
        this.discharge(peer, peer.fifoUid[i], peer.fifoHandles[i], peer.pool.chargedOf(slot));
        peer.pool.free(slot);
      }
    }
    peer.fifoHandleList.clear();
    for (const d of peer.overflow) {
      if (d.slot >= 0) {
        this.discharge(peer, d.senderUid, d.handlesCharged, peer.pool.chargedOf(d.slot));
        peer.pool.free(d.slot);
      }
    }
    peer.overflow.length = 0;
    // Received, unreleased slices.
    const received = peer.pool.freeAllReceived();
    if (received.count > 0) {
      peer.user.ledger.release(received.count, 0, received.bytes);
      peer.ledger.release(received.count, 0, received.bytes);
    }
    // Handles: what is still charged is exactly the committed references.
    const held = peer.ledger.max[HANDLES] - peer.ledger.remaining[HANDLES];
    if (held > 0) {
      peer.user.ledger.release(0, held, 0);
      peer.ledger.release(0, held, 0);
    }
    for (const h of [...peer.handles.values()]) {
      h.refs = 0;
      this.handles.dropHandle(peer, h);
    }
    peer.user.peers.delete(peer);
    this.bells.dropBell(peer);
    const at = core.peers.indexOf(peer);
    if (at >= 0) core.peers.splice(at, 1);
    core.byId.delete(peer.id);
    peer.shutDown(state, reason);
    core.publishDirty();
    peer.port.close();
  }

  discharge(peer: PeerState, uid: number, h: number, bytes: number): void {
    peer.user.ledger.discharge(uid, 1, h, bytes);
    peer.ledger.discharge(uid, 1, h, bytes);
  }

  disconnectById(id: number, state: number, reason: number): void {
    const peer = this.core.byId.get(id);
    if (peer !== undefined) this.disconnect(peer, state, reason);
  }

  /** bus.close(): every peer sees ESHUTDOWN from now on. */
  closeAll(): void {
    const core = this.core;
    if (core.closed) return;
    for (const peer of [...core.peers]) {
      // Mark first so that no node-destroy is queued to peers that are going away too.
      peer.shutDown(STATE_BUS_CLOSED, REASON_NONE);
    }
    for (const peer of [...core.peers]) peer.port.close();
    core.peers.length = 0;
    core.byId.clear();
    core.closed = true;
    // Anyone still ringing the doorbell wakes a coordinator that is gone; harmless.
    Atomics.notify(this.bells.doorbellI32, BELL_COUNTER);
  }

  flushCondemned(): void {
    const core = this.core;
    while (core.condemned.length > 0) {
      const p = core.condemned.pop()!;
      this.disconnect(p, STATE_DISCONNECTED, REASON_PROTOCOL);
    }
  }
}
