/*
 * Disconnects: PEER_DISCONNECT and bus shutdown (bus1 peer.c; coordinator thread only).
 *
 * Cutting a peer off gives everything back: its nodes are destroyed in one transaction
 * (holders told), its queued messages are discharged (the senders' shares included),
 * its received slices and handles released, its bell freed; then its state word says
 * why (closed, disconnected with a reason, bus closed). Idempotent. `condemned` peers
 * (an impossible tail, too much held back) are cut off here once the round is over.
 *
 * Death watches: one MessagePort per thread that opened peers (src/peer/watch.ts), not
 * per peer. When one closes, that thread is gone, and every open peer whose CTL_OPENED
 * word names it (threadId + 1, written by Peer.open) is disconnected with
 * REASON_THREAD_EXIT: O(peers) once per thread death. The thread's id comes from Node
 * (the 'workerMessage' source), so a peer can only ever name itself into a thread's
 * fate: a peer that writes another thread into its own word is cut off with that thread,
 * or at bus.close(), and harms nobody else.
 */

import type { MessagePort } from 'node:worker_threads';
import {
  STATE_DISCONNECTED, STATE_BUS_CLOSED, REASON_PROTOCOL, REASON_NONE, REASON_THREAD_EXIT, BELL_COUNTER, CTL_OPENED,
} from '../../shared/layout.js';
import { HANDLES } from './ledger.js';
import { SLOT_QUEUED } from './pool.js';
import type { PeerState } from './peer-state.js';
import type { CoordinatorCore } from './core.js';
import type { Bells } from './bells.js';
import type { Handles } from './handles.js';
import type { SegmentMail } from './segment-mail.js';

export class Disconnects {
  /** The live death watches: one per thread that opened peers, and the ports of tickets not yet opened (closed at bus.close()). */
  readonly #watches = new Set<MessagePort>();

  constructor(
    readonly core: CoordinatorCore, readonly bells: Bells, readonly handles: Handles, readonly mail: SegmentMail,
  ) {}

  /** Keep thread `source`'s watch; when it closes, cut off that thread's peers, then call `died`. */
  watchThread(source: number, port: MessagePort, died: () => void): void {
    if (this.core.closed) {
      port.close();
      return;
    }
    this.#watches.add(port);
    port.on('close', () => {
      this.#watches.delete(port);
      this.mail.threadGone(source, port);
      this.threadDied(source);
      died();
    });
    // The thread's peers' pool segments travel on this port too (segment-mail.ts).
    this.mail.threadKnown(source, port);
    // It only watches; it must not keep this thread alive.
    port.unref();
  }

  /**
   * Keep a ticket's port: if it closes while the ticket is unopened, the thread it was
   * posted to is gone without opening it, and the peer is disconnected. Peer.open()
   * closes it after claiming the ticket; the thread's watch takes over from there.
   */
  watchTicket(peerId: number, port: MessagePort, died: () => void): void {
    const peer = this.core.byId.get(peerId);
    if (this.core.closed || peer === undefined) {
      port.close();
      return;
    }
    this.#watches.add(port);
    port.on('close', () => {
      this.#watches.delete(port);
      if (!peer.open || Atomics.load(peer.ctl, CTL_OPENED) !== 0) return;
      this.disconnect(peer, STATE_DISCONNECTED, REASON_THREAD_EXIT);
      died();
    });
    port.unref();
  }

  /** Thread `source` is gone: disconnect every open peer that it opened. */
  threadDied(source: number): void {
    const opened = source + 1;
    const dead = this.core.peers.filter((p) => Atomics.load(p.ctl, CTL_OPENED) === opened);
    for (const p of dead) this.disconnect(p, STATE_DISCONNECTED, REASON_THREAD_EXIT);
  }

  /**
   * PEER_DISCONNECT: destroy the peer's nodes in one transaction, drop its queue (giving
   * every charge back), release its handles, and cut it off. Idempotent.
   */
  disconnect(peer: PeerState, state: number, reason: number): void {
    const core = this.core;
    if (!peer.open) return;
    core.flushRun();
    // A peer that was never sent anything has nothing to account, and no page of IN to read.
    const everSentTo = peer.hasDescriptors;
    if (everSentTo) peer.syncConsumed();
    core.waiters.forget(peer);
    core.names.delete(peer.id);
    // Closed first, so that its own nodes' destruction queues nothing to it.
    peer.open = false;
    this.handles.destroyNodes([...peer.ownedNodes]);
    // Queued, unreceived messages: everything given back, the sender's share included.
    if (everSentTo) {
      for (let pos = peer.syncedTail; pos !== peer.desc.position; pos = (pos + 1) >>> 0) {
        const i = peer.fifoIndex(pos);
        const slot = peer.fifoSlot[i];
        if (slot >= 0 && peer.pool.stateOf(slot) === SLOT_QUEUED) {
          this.discharge(peer, peer.fifoUid[i], peer.fifoHandles[i], peer.pool.chargedOf(slot));
          peer.pool.free(slot);
        }
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
    this.mail.forget(peer);
    peer.shutDown(state, reason);
    core.publishDirty();
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
    // The watches close too, so every peer thread learns that this bus is gone.
    for (const port of this.#watches) port.close();
    this.#watches.clear();
    this.mail.clear();
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
