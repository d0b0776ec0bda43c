/*
 * The coordinator's state machine (bus1 main.c): it reads requests from every peer's OUT
 * ring, validates them, applies accounting and the quota, gives each transaction the
 * next global sequence number, and publishes the result into the receivers' IN buffers.
 * Coordinator thread only; nothing here blocks. Driven by workers/coordinator.ts.
 *
 * Global order: one thread commits one transaction at a time, with the next `seq`, and
 * writes it to every destination before it looks at the next request. A batch of
 * descriptors is published (one head store per receiver) before any other request is
 * read, so a peer that saw m1 can never get a later transaction ahead of m1 anywhere.
 *
 * This class is the face the coordinator thread and the owner's requests see; the work
 * is done by parts that share one CoordinatorCore (core.ts) and call each other only
 * downwards in this order, so that no module imports another in a circle:
 *   core          shared state, errors, the dirty/wake/condemned lists, the unicast run;
 *   receipts      receipts (descriptor tails), slice releases, quota checks that sync;
 *   bells         who is polled, the doorbell, sleeping;
 *   verdicts      verdict records and acks;
 *   descriptors   publishing into a receiver's ring, overflow;
 *   handles       nodes and handles, node-destroy/node-release;
 *   transactions  SEND: destinations, quota, runs of unicasts, delivery;
 *   disconnect    PEER_DISCONNECT and bus shutdown;
 *   dispatch      reading OUT rings and dispatching requests.
 */

import type { MessagePort } from 'node:worker_threads';
import {
  MAX_HANDLES_PER_MESSAGE, CONTROL_BYTES, messageBytes, outRingBytes, descriptorSlots, peerLayout,
} from '../../shared/layout.js';
import { BusError } from '../errors.js';
import { Ledger, type Limits } from './ledger.js';
import { Pool, MAX_SLOTS_PER_CLASS, firstSegmentBytes, mappedBuffer } from './pool.js';
import { PeerState } from './peer-state.js';
import { Waiters } from './waiters.js';
import { collectStats } from './stats.js';
import type { BusStats } from '../stats.js';
import { CoordinatorCore, type CoordinatorConfig } from './core.js';
import { Bells, IDLE_POLLS } from './bells.js';
import { Verdicts } from './verdicts.js';
import { Receipts } from './receipts.js';
import { Descriptors } from './descriptors.js';
import { Handles } from './handles.js';
import { Transactions } from './transactions.js';
import { Disconnects } from './disconnect.js';
import { Dispatcher } from './dispatch.js';
import { SegmentMail } from './segment-mail.js';

export type { CoordinatorConfig };
export { BATCH_RECORDS } from './dispatch.js';

/** What the owner needs to mint a ticket (sent back over the control port). */
export interface PeerCreated {
  peerId: number;
  uid: number;
  /** The peer's rings and first pool segment (shared/layout.ts): its OUT ring at outOffset, then IN. */
  inSab: SharedArrayBuffer;
  /** The peer's control block (CONTROL_BYTES, shared/layout.ts). */
  ctlSab: SharedArrayBuffer;
  outOffset: number;
  outRingBytes: number;
  verdictOffset: number;
  descriptorOffset: number;
  descriptorSlots: number;
  maxMessageBytes: number;
  limits: Limits;
}

/** Largest pool address space: pool addresses are handled as 32-bit signed integers. */
const MAX_POOL_BYTES = 2 ** 31 - 1;

export class Coordinator {
  readonly #core: CoordinatorCore;
  readonly #bells: Bells;
  readonly #receipts: Receipts;
  readonly #descriptors: Descriptors;
  readonly #handles: Handles;
  readonly #disc: Disconnects;
  readonly #mail = new SegmentMail();
  readonly #dispatcher: Dispatcher;
  readonly doorbell: SharedArrayBuffer;
  readonly doorbellI32: Int32Array;
  readonly peers: PeerState[];

  constructor(config: CoordinatorConfig) {
    const core = this.#core = new CoordinatorCore(config);
    const receipts = this.#receipts = new Receipts(core);
    core.waiters = new Waiters(core.users, (uid) => {
      const user = core.users.peek(uid);
      if (user !== undefined) for (const p of user.peers) receipts.syncPeer(p);
    });
    const bells = this.#bells = new Bells(core);
    const verdicts = new Verdicts(core);
    const descriptors = this.#descriptors = new Descriptors(core, receipts, bells);
    const handles = this.#handles = new Handles(core, receipts, descriptors);
    const tx = new Transactions(core, receipts, descriptors, handles, verdicts);
    const disc = this.#disc = new Disconnects(core, bells, handles, this.#mail);
    this.#dispatcher = new Dispatcher(core, receipts, verdicts, tx, handles, disc);
    this.doorbell = bells.doorbell;
    this.doorbellI32 = bells.doorbellI32;
    this.peers = core.peers;
  }

  /** The doorbell counter seen before the last beginSleep() check; the wait is on it. */
  get sleepSeen(): number {
    return this.#bells.sleepSeen;
  }

  // ---- owner operations ---------------------------------------------------------------

  createPeer(uid: number, requested: Partial<Limits> | undefined, name?: string): PeerCreated {
    const core = this.#core;
    core.assertOpen();
    const user = core.users.get(uid);
    const userMax = core.users.limitsOf(uid);
    const limits: Limits = { ...userMax, ...core.config.peerLimits, ...requested };
    // The user's limit always wins.
    limits.messages = Math.min(limits.messages, userMax.messages);
    limits.handles = Math.min(limits.handles, userMax.handles);
    limits.bytes = Math.min(limits.bytes, userMax.bytes);
    if (limits.messages > MAX_SLOTS_PER_CLASS) {
      throw new BusError('EINVAL', `createPeer: a peer may hold at most ${MAX_SLOTS_PER_CLASS} messages (asked ${limits.messages})`);
    }
    const largest = Math.min(limits.bytes, messageBytes(core.config.maxMessageBytes, MAX_HANDLES_PER_MESSAGE));
    const pool = new Pool(limits.messages, limits.bytes, largest);
    if (pool.totalBytes > MAX_POOL_BYTES) {
      throw new BusError('EINVAL', `createPeer: with limits ${JSON.stringify(limits)} and messages of up to `
        + `${core.config.maxMessageBytes} bytes, this peer's receive pool would need ${pool.totalBytes} bytes of `
        + `address space, more than ${MAX_POOL_BYTES}; lower its bytes or messages limit, or the bus's maxMessageBytes`);
    }
    const slots = descriptorSlots(limits.messages);
    const ringBytes = outRingBytes(core.config.maxMessageBytes);
    // One buffer holds the rings and the pool's first segment; the rest of the pool is made on demand.
    const layout = peerLayout(ringBytes, slots, firstSegmentBytes(limits.messages));
    const inSab = mappedBuffer(layout.totalBytes);
    // Small and fixed, so V8 takes it from the allocator's heap: no page of its own (shared/layout.ts).
    const ctlSab = new SharedArrayBuffer(CONTROL_BYTES);
    const peer = new PeerState({
      id: core.nextPeerId++, uid, user, ledger: new Ledger(uid, limits, core.config.quota), inSab, ctlSab,
      outOffset: layout.outOffset, outRingBytes: ringBytes, verdictOffset: layout.verdictOffset,
      descriptorOffset: layout.descriptorOffset, descriptorSlots: slots, pool, poolOffset: layout.poolOffset,
    });
    core.peers.push(peer);
    core.byId.set(peer.id, peer);
    if (name !== undefined) core.names.set(peer.id, name);
    user.peers.add(peer);
    peer.mail = this.#mail;
    this.#bells.assignBell(peer);
    return {
      peerId: peer.id, uid, inSab, ctlSab, outOffset: layout.outOffset, outRingBytes: ringBytes,
      verdictOffset: layout.verdictOffset, descriptorOffset: layout.descriptorOffset, descriptorSlots: slots,
      maxMessageBytes: core.config.maxMessageBytes, limits,
    };
  }

  peerById(id: number): PeerState {
    this.#core.assertOpen();
    const peer = this.#core.byId.get(id);
    if (peer === undefined || !peer.open) {
      throw new BusError('ESHUTDOWN', `peer ${id} is closed or disconnected`);
    }
    return peer;
  }

  /** bus.createNode(ticket): a node owned by `peer`; returns the owner's handle id. */
  ownerCreateNode(peer: PeerState): number {
    return this.#handles.ownerCreateNode(peer);
  }

  /** bus1 HANDLE_TRANSFER: copy `from`'s handle to `to`; returns `to`'s id. */
  transferHandle(from: PeerState, handleId: number, to: PeerState): number {
    return this.#handles.transferHandle(from, handleId, to);
  }

  usage(uid: number): { max: Limits; remaining: Limits; shares: Record<number, Limits> } {
    const core = this.#core;
    core.assertOpen();
    const user = core.users.peek(uid);
    if (user === undefined) {
      const max = core.users.limitsOf(uid);
      return { max, remaining: { ...max }, shares: {} };
    }
    for (const p of user.peers) this.#receipts.syncPeer(p);
    this.#disc.flushCondemned();
    return ledgerUsage(user.ledger);
  }

  /** bus.stats(): receipts accounted first, so that `received` and `queued` are exact. */
  stats(): BusStats {
    const core = this.#core;
    core.assertOpen();
    for (const p of core.peers) this.#receipts.syncPeer(p);
    this.#disc.flushCondemned();
    return collectStats(core.users.all(), core.peers, core.seq, core.names, (p) => core.waiters.waitingOf(p));
  }

  // ---- the loop body (workers/coordinator.ts) -------------------------------------------

  /** Process requests from every peer whose bell rang or that is still being polled. Returns the records handled. */
  runOnce(): number {
    const bells = this.#bells;
    bells.collectBells();
    let progress = 0;
    const active = bells.active;
    for (let i = 0; i < active.length; i++) {
      const peer = active[i];
      if (!peer.open) continue;
      let n = 0;
      if (peer.overflow.length > 0) n += this.#descriptors.flushOverflow(peer);
      n += this.#dispatcher.processPeer(peer);
      progress += n;
      if (n === 0 && ++peer.idlePolls >= IDLE_POLLS && bells.release(peer, i)) i--;
    }
    this.#disc.flushCondemned();
    bells.deliverWakes();
    this.#core.waiters.poll();
    return progress;
  }

  /** Sleeping receivers woken so far (Bells.woken). */
  get woken(): number {
    return this.#bells.woken;
  }

  /** Bells.beginSleep: hand idle peers back to their bells; false when there is work after all. */
  beginSleep(): boolean {
    return this.#bells.beginSleep();
  }

  /** Bells.sweep: poll the unpolled peers whose rings hold records (all within SWEEP_PERIOD_MS). */
  sweep(): void {
    this.#mail.flushPending();
    this.#bells.sweep();
  }

  /** Bells.hasWork: a bell rang, or a polled peer has records. */
  hasWork(): boolean {
    return this.#bells.hasWork();
  }

  /** Bells.needsPolling: a polled peer is stalled or holds descriptors back (sleep at most POLL_MS). */
  needsPolling(): boolean {
    return this.#bells.needsPolling();
  }

  // ---- disconnect and shutdown ------------------------------------------------------------

  /** PEER_DISCONNECT (Disconnects.disconnect). Idempotent. */
  disconnect(peer: PeerState, state: number, reason: number): void {
    this.#disc.disconnect(peer, state, reason);
  }

  disconnectById(id: number, state: number, reason: number): void {
    this.#disc.disconnectById(id, state, reason);
  }

  /** A ticket's port (src/ticket.ts); `died` runs if it closes before the ticket was opened. */
  watchTicket(peerId: number, port: MessagePort, died: () => void): void {
    this.#disc.watchTicket(peerId, port, died);
  }

  /** Thread `source`'s death watch arrived (src/peer/watch.ts); `died` runs after its peers are cut off. */
  watchThread(source: number, port: MessagePort, died: () => void): void {
    this.#disc.watchThread(source, port, died);
  }

  /** bus.close(): every peer sees ESHUTDOWN from now on. */
  closeAll(): void {
    this.#disc.closeAll();
  }
}

function ledgerUsage(ledger: Ledger): { max: Limits; remaining: Limits; shares: Record<number, Limits> } {
  const shares: Record<number, Limits> = {};
  for (const [uid, s] of ledger.shares()) {
    if (s[0] !== 0 || s[1] !== 0 || s[2] !== 0) shares[uid] = { messages: s[0], handles: s[1], bytes: s[2] };
  }
  return {
    max: { messages: ledger.max[0], handles: ledger.max[1], bytes: ledger.max[2] },
    remaining: { messages: ledger.remaining[0], handles: ledger.remaining[1], bytes: ledger.remaining[2] },
    shares,
  };
}
