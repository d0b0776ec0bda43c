/*
 * The coordinator's state machine (bus1 main.c + tx.c + message.c): it reads requests
 * from every peer's OUT ring, validates them, applies accounting and the quota, gives
 * each transaction the next global sequence number, and publishes the result into the
 * receivers' IN buffers. Coordinator thread only; nothing here blocks.
 *
 * Global order: one thread commits one transaction at a time, with the next `seq`, and
 * writes it to every destination before it looks at the next request. A batch of
 * descriptors is published (one head store per receiver) before any other request is
 * read, so a peer that saw m1 can never get a later transaction ahead of m1 anywhere.
 *
 * A rejected request changes nothing: every check (handles, destinations, quota of
 * every destination) runs before the first charge or write.
 *
 * Untrusted input: everything read from an OUT ring. A record whose framing is broken
 * disconnects the peer (REASON_PROTOCOL); a well-framed record with bad fields gets an
 * EINVAL verdict. A peer's tail or claim words in IN are validated the same way.
 */

import { MessageChannel, type MessagePort } from 'node:worker_threads';
import {
  OP_SEND, OP_CREATE_NODE, OP_RELEASE_HANDLE, OP_RELEASE_SLICE, OP_RELEASE_SLICES, OP_DESTROY_NODES, OP_QUERY, OP_CLOSE,
  OP_RESUME, SEND_FLAG_STREAM,
  SEND_HEADER_WORDS, SEND_FLAG_PARTIAL, MAX_DESTINATIONS, MAX_HANDLES_PER_MESSAGE,
  KIND_DATA, KIND_NODE_DESTROY, KIND_NODE_RELEASE, DESC_CONTINUE, DESC_NHANDLES_SHIFT,
  D_KIND, D_DEST, D_OFFSET, D_BYTES, D_SEQ_F64, D_UID_F64, V_REQ, V_CODE, V_RESOURCE, V_DETAIL, V_VALUES_F64,
  INVALID_HANDLE, CTL_STATE, CTL_BELL, STATE_CLOSED, STATE_DISCONNECTED, STATE_BUS_CLOSED, REASON_PROTOCOL, REASON_NONE,
  align8, messageBytes, outRingBytes, descriptorSlots, inLayout, RING_HEADER_BYTES, OP_WAIT, SEND_FLAG_WAIT, TAG_MASK,
  DOORBELL_BYTES, BELL_COUNTER, BELL_MAP, MAX_BELLS, NO_BELL,
} from '../../shared/layout.js';
import { RING_EMPTY, RING_CORRUPT } from '../../shared/ring.js';
import { codeNumber, type BusErrorCode, BusError } from '../errors.js';
import { ChargeSet, Ledger, MESSAGES, HANDLES, BYTES, type Limits } from './ledger.js';
import type { QuotaRule } from './quota.js';
import { Pool, SLOT_RECEIVED, SLOT_QUEUED, MAX_SLOTS_PER_CLASS } from './pool.js';
import { BusNode as NewNode, Handle as NewHandle } from './nodes.js';
import { PeerState, type PendingDescriptor, type BusNode, type Handle } from './peer-state.js';
import { Users } from './users.js';
import { Waiters } from './waiters.js';
import { collectStats, countRefused, countSent } from './stats.js';
import type { BusStats } from '../stats.js';

export interface CoordinatorConfig {
  userLimits: Limits;
  peerLimits: Partial<Limits>;
  users: Map<number, Partial<Limits>>;
  quota: QuotaRule;
  maxMessageBytes: number;
}

/** What the owner needs to mint a ticket (sent back over the control port). */
export interface PeerCreated {
  peerId: number;
  uid: number;
  outSab: SharedArrayBuffer;
  inSab: SharedArrayBuffer;
  outRingBytes: number;
  verdictOffset: number;
  descriptorOffset: number;
  descriptorSlots: number;
  maxMessageBytes: number;
  limits: Limits;
}

/** Largest IN buffer: its offsets are handled as 32-bit signed integers. */
const MAX_IN_BYTES = 2 ** 31 - 1;

/** Records processed from one peer before moving to the next, for fairness. */
export const BATCH_RECORDS = 256;
/** Empty polls of a peer's OUT ring before it is handed back to its bell. */
const IDLE_POLLS = 4;
/** A peer whose held-back descriptors exceed this many times its ring is cut off. */
const OVERFLOW_FACTOR = 4;

const E_DQUOT = codeNumber('EDQUOT');
const E_NXIO = codeNumber('ENXIO');
const E_SHUTDOWN = codeNumber('ESHUTDOWN');
const E_MSGSIZE = codeNumber('EMSGSIZE');
const E_INVAL = codeNumber('EINVAL');
const E_NOTUNIQ = codeNumber('ENOTUNIQ');
const E_BUSY = codeNumber('EBUSY');
const E_REMOTE = codeNumber('EREMOTE');
const E_STALE = codeNumber('ESTALE');

const enum Dispatch { Done, Retry, Violation }

export class Coordinator {
  readonly doorbell = new SharedArrayBuffer(DOORBELL_BYTES);
  readonly doorbellI32 = new Int32Array(this.doorbell);
  readonly peers: PeerState[] = [];
  /**
   * The peers polled each round: those whose bell rang, until their OUT ring has been
   * empty for IDLE_POLLS rounds, plus any with held-back descriptors, a stalled verdict
   * ring, or no bell. Everyone else costs nothing until its bell rings.
   */
  private readonly active: PeerState[] = [];
  /** Peers by bell index; freed bells are reused (a stale bit costs one empty poll). */
  private readonly bells: Array<PeerState | undefined> = [];
  private readonly freeBells: number[] = [];
  /** Peers with a deferred wake-up (publish() found them asleep with few descriptors). */
  private readonly wakes: PeerState[] = [];
  /** The doorbell counter seen before the last beginSleep() check; the wait is on it. */
  sleepSeen = 0;
  private readonly byId = new Map<number, PeerState>();
  private readonly users: Users<PeerState>;
  private readonly config: CoordinatorConfig;
  private nextPeerId = 1;
  private seq = 0;
  private epoch = 0;
  private closed = false;

  // Scratch state of the transaction being built; reused so the send path allocates nothing.
  private readonly charges = new ChargeSet();
  private readonly txNodes: BusNode[] = [];
  private readonly txDestIds: number[] = [];
  private readonly txHandles: Handle[] = [];
  private readonly txOrder: number[] = [];
  private readonly txAccepted: boolean[] = [];
  private readonly dirty: PeerState[] = [];
  private readonly condemned: PeerState[] = [];
  // The open run of unicast sends (sendUnicast): one sending uid to one receiving peer,
  // checked against the receiver's headroom and charged as one at flushRun(). Flushed
  // before anything else may look at or change those ledgers: any other request, a sync
  // of the receiver's receipts, the end of the sender's batch, a disconnect.
  private runTarget: PeerState | null = null;
  private runUid = 0;
  private runM = 0;
  private runB = 0;
  private runHeadM = 0;
  private runHeadB = 0;
  // The error of the request being processed.
  private errCode = 0;
  private errDetail = 0;
  private errResource = 0;
  private errUid = 0;
  /** The layer tag of the send being committed (flags' top bits), copied into its descriptors. */
  private txTag = 0;
  private readonly waiters: Waiters;
  /** Peer names given at createPeer (bus.spawn's worker name), for stats. */
  private readonly names = new Map<number, string>();

  constructor(config: CoordinatorConfig) {
    this.config = config;
    this.users = new Users(config.userLimits, config.users, config.quota);
    this.waiters = new Waiters(this.users, (uid) => {
      const user = this.users.peek(uid);
      if (user !== undefined) for (const p of user.peers) this.syncPeer(p);
    });
  }

  // ---- owner operations ---------------------------------------------------------------

  createPeer(uid: number, requested: Partial<Limits> | undefined, name?: string): { created: PeerCreated; port: MessagePort } {
    this.assertOpen();
    const user = this.users.get(uid);
    const userMax = this.users.limitsOf(uid);
    const limits: Limits = { ...userMax, ...this.config.peerLimits, ...requested };
    // The user's limit always wins.
    limits.messages = Math.min(limits.messages, userMax.messages);
    limits.handles = Math.min(limits.handles, userMax.handles);
    limits.bytes = Math.min(limits.bytes, userMax.bytes);
    if (limits.messages > MAX_SLOTS_PER_CLASS) {
      throw new BusError('EINVAL', `createPeer: a peer may hold at most ${MAX_SLOTS_PER_CLASS} messages (asked ${limits.messages})`);
    }
    const largest = Math.min(limits.bytes, messageBytes(this.config.maxMessageBytes, MAX_HANDLES_PER_MESSAGE));
    const poolBytes = Pool.bytesFor(limits.messages, limits.bytes, largest);
    const slots = descriptorSlots(limits.messages);
    const layout = inLayout(slots, poolBytes);
    if (layout.totalBytes > MAX_IN_BYTES) {
      throw new BusError('EINVAL', `createPeer: with limits ${JSON.stringify(limits)} and messages of up to `
        + `${this.config.maxMessageBytes} bytes, this peer's receive pool would need ${layout.totalBytes} bytes of `
        + `address space, more than ${MAX_IN_BYTES}; lower its bytes or messages limit, or the bus's maxMessageBytes`);
    }
    const ringBytes = outRingBytes(this.config.maxMessageBytes);
    const outSab = new SharedArrayBuffer(RING_HEADER_BYTES + ringBytes);
    const inSab = new SharedArrayBuffer(layout.totalBytes);
    const { port1, port2 } = new MessageChannel();
    const peer = new PeerState({
      id: this.nextPeerId++, uid, user, ledger: new Ledger(uid, limits, this.config.quota), outSab, inSab,
      outRingBytes: ringBytes, verdictOffset: layout.verdictOffset, descriptorOffset: layout.descriptorOffset,
      descriptorSlots: slots, pool: new Pool(layout.poolOffset, limits.messages, limits.bytes, largest), port: port1,
    });
    this.peers.push(peer);
    this.byId.set(peer.id, peer);
    if (name !== undefined) this.names.set(peer.id, name);
    user.peers.add(peer);
    this.assignBell(peer);
    return {
      created: {
        peerId: peer.id, uid, outSab, inSab, outRingBytes: ringBytes, verdictOffset: layout.verdictOffset,
        descriptorOffset: layout.descriptorOffset, descriptorSlots: slots,
        maxMessageBytes: this.config.maxMessageBytes, limits,
      },
      port: port2,
    };
  }

  peerById(id: number): PeerState {
    this.assertOpen();
    const peer = this.byId.get(id);
    if (peer === undefined || !peer.open) {
      throw new BusError('ESHUTDOWN', `peer ${id} is closed or disconnected`);
    }
    return peer;
  }

  /** bus.createNode(ticket): a node owned by `peer`; returns the owner's handle id. */
  ownerCreateNode(peer: PeerState): number {
    const code = this.createNode(peer);
    if (code !== 0) throw this.lastError('createNode');
    return this.errDetail;
  }

  /** bus1 HANDLE_TRANSFER: copy `from`'s handle to `to`; returns `to`'s id. */
  transferHandle(from: PeerState, handleId: number, to: PeerState): number {
    this.syncPeer(from);
    this.syncPeer(to);
    const h = from.handles.get(handleId);
    if (h === undefined || h.refs - h.refsInFlight <= 0) {
      throw new BusError('ENXIO', `transferHandle: handle ${handleId} is not known to the source peer`);
    }
    if (h.node.destroyed) {
      throw new BusError('ESHUTDOWN', `transferHandle: the node behind handle ${handleId} is destroyed`);
    }
    const ok = this.checkOrSync(to, from.uid, 0, 1, 0);
    if (!ok) throw this.lastError('transferHandle');
    to.user.ledger.chargeCommitted(from.uid, 0, 1, 0);
    to.ledger.chargeCommitted(from.uid, 0, 1, 0);
    const th = this.install(to, h.node);
    return th.id;
  }

  usage(uid: number): { max: Limits; remaining: Limits; shares: Record<number, Limits> } {
    this.assertOpen();
    const user = this.users.peek(uid);
    if (user === undefined) {
      const max = this.users.limitsOf(uid);
      return { max, remaining: { ...max }, shares: {} };
    }
    for (const p of user.peers) this.syncPeer(p);
    this.flushCondemned();
    return ledgerUsage(user.ledger);
  }

  /** bus.stats(): receipts accounted first, so that `received` and `queued` are exact. */
  stats(): BusStats {
    this.assertOpen();
    for (const p of this.peers) this.syncPeer(p);
    this.flushCondemned();
    return collectStats(this.users.all(), this.peers, this.seq, this.names, (p) => this.waiters.waitingOf(p));
  }

  // ---- the loop body ------------------------------------------------------------------

  /** Process requests from every peer whose bell rang or that is still being polled. Returns the records handled. */
  runOnce(): number {
    this.collectBells();
    let progress = 0;
    const active = this.active;
    for (let i = 0; i < active.length; i++) {
      const peer = active[i];
      if (!peer.open) continue;
      let n = 0;
      if (peer.overflow.length > 0) n += this.flushOverflow(peer);
      n += this.processPeer(peer);
      progress += n;
      if (n === 0 && ++peer.idlePolls >= IDLE_POLLS && this.release(peer, i)) i--;
    }
    this.flushCondemned();
    this.deliverWakes();
    this.waiters.poll();
    return progress;
  }

  // ---- bells: who gets polled ---------------------------------------------------------
  //
  // A peer's OUT "consumer sleeping" flag means "not polled: ring your bell". The peer, on
  // publishing while it is up, sets its bit in the bell map and bumps and notifies the
  // doorbell counter (src/peer.ts #kick). Sequentially consistent atomics make the
  // hand-over race-free: the coordinator raises the flag and then looks at the ring, the
  // peer publishes and then looks at the flag, so one of them sees the other. Bells are
  // shared memory, so nothing here trusts them: a wrong bit costs an empty poll, a
  // cleared one is caught by sweep().

  private assignBell(peer: PeerState): void {
    const bell = this.freeBells.length > 0 ? this.freeBells.pop()! : this.bells.length < MAX_BELLS ? this.bells.length : NO_BELL;
    peer.bell = bell;
    Atomics.store(peer.ctl, CTL_BELL, bell);
    if (bell === NO_BELL) {
      // Polled every round; its flag stays up so that it still wakes a sleeping coordinator.
      peer.polled = true;
      this.active.push(peer);
    } else {
      this.bells[bell] = peer;
    }
    peer.out.setConsumerSleeping(true);
  }

  /** Take every rung bell and poll those peers from now on. */
  private collectBells(): void {
    const db = this.doorbellI32;
    const words = (this.bells.length + 31) >> 5;
    for (let w = 0; w < words; w++) {
      if (Atomics.load(db, BELL_MAP + w) === 0) continue;
      let bits = Atomics.exchange(db, BELL_MAP + w, 0);
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits);
        bits &= ~(1 << b);
        const peer = this.bells[(w << 5) + b];
        if (peer === undefined || !peer.open) continue;
        this.poll(peer);
      }
    }
  }

  private poll(peer: PeerState): void {
    peer.idlePolls = 0;
    if (peer.polled) return;
    peer.polled = true;
    peer.out.setConsumerSleeping(false);
    this.active.push(peer);
  }

  /**
   * Stop polling the idle peer at active[i] (its bell will ring). False when it must stay:
   * it has no bell, or it is stalled or holds back descriptors, or it published meanwhile.
   */
  private release(peer: PeerState, i: number): boolean {
    if (this.active[i] !== peer || peer.bell === NO_BELL || peer.stalled || peer.overflow.length > 0) return false;
    peer.out.setConsumerSleeping(true);
    if (peer.out.hasData()) {
      peer.out.setConsumerSleeping(false);
      peer.idlePolls = 0;
      return false;
    }
    peer.polled = false;
    const last = this.active.pop()!;
    if (last !== peer) this.active[i] = last;
    return true;
  }

  private dropBell(peer: PeerState): void {
    if (peer.polled) {
      const at = this.active.indexOf(peer);
      if (at >= 0) this.active.splice(at, 1);
      peer.polled = false;
    }
    if (peer.bell !== NO_BELL) {
      this.bells[peer.bell] = undefined;
      this.freeBells.push(peer.bell);
    }
  }

  /**
   * Wake the sleeping receivers publish() did not wake at once. A round is the batch:
   * waiting longer (say, for the coordinator to go idle) would starve receivers of a bus
   * that is never idle.
   */
  private deliverWakes(): void {
    const w = this.wakes;
    for (let i = 0; i < w.length; i++) {
      w[i].inWakeList = false;
      w[i].wakeIfPending();
    }
    w.length = 0;
  }

  /**
   * Before the coordinator sleeps: hand every idle polled peer back to its bell and read
   * the doorbell counter (sleepSeen: the wait is on it, so a bell rung after this wakes
   * it). False when there is work after all.
   */
  beginSleep(): boolean {
    const active = this.active;
    for (let i = 0; i < active.length; i++) {
      if (active[i].open && this.release(active[i], i)) i--;
    }
    this.sleepSeen = Atomics.load(this.doorbellI32, BELL_COUNTER);
    return !this.hasWork();
  }

  /**
   * Poll every unpolled peer whose ring holds records: O(peers), so only called when the
   * coordinator turns to its event loop (at most every LOOP_SLICE_MS of work or
   * BLOCK_SLICE_MS of sleep). Bells are shared memory: a hostile peer can clear another
   * peer's bit, and this bounds what that costs the victim to one such interval.
   */
  sweep(): void {
    const peers = this.peers;
    for (let i = 0; i < peers.length; i++) {
      const p = peers[i];
      if (p.open && !p.polled && p.out.hasData()) this.poll(p);
    }
  }

  /**
   * True when some request can be processed now: a bell rang, or a polled peer has
   * records. A peer stalled on its own unread verdicts, or with descriptors held back, is
   * not work: it is polled at POLL_MS (needsPolling) so that a peer that stops reading
   * cannot keep this thread spinning.
   */
  hasWork(): boolean {
    for (const peer of this.active) {
      if (peer.open && !peer.stalled && peer.out.hasData()) return true;
    }
    const db = this.doorbellI32;
    const words = (this.bells.length + 31) >> 5;
    for (let w = 0; w < words; w++) if (Atomics.load(db, BELL_MAP + w) !== 0) return true;
    return false;
  }

  needsPolling(): boolean {
    for (const peer of this.active) if (peer.open && (peer.stalled || peer.overflow.length > 0)) return true;
    return false;
  }

  private processPeer(peer: PeerState): number {
    peer.stalled = false;
    let n = 0;
    const out = peer.out;
    while (n < BATCH_RECORDS) {
      const off = out.read();
      if (off === RING_EMPTY) break;
      if (off === RING_CORRUPT) {
        this.disconnect(peer, STATE_DISCONNECTED, REASON_PROTOCOL);
        return n;
      }
      const r = this.dispatch(peer, out.op, off, out.bodyBytes);
      if (r === Dispatch.Retry) break;
      out.consume();
      n++;
      if (r === Dispatch.Violation) {
        this.disconnect(peer, STATE_DISCONNECTED, REASON_PROTOCOL);
        return n;
      }
      if (!peer.open) return n;
    }
    this.flushRun();
    if (n > 0) {
      // A producer waiting for space is woken once half the ring is free: waking it for a
      // few bytes would cost a futex call per batch.
      if (out.release() && out.used() <= out.capacity / 2) out.wakeProducer();
      this.markDirty(peer);
      this.publishDirty();
    }
    return n;
  }

  private dispatch(peer: PeerState, op: number, off: number, len: number): Dispatch {
    const i32 = peer.out.i32;
    const w = off >> 2;
    if (len < 4) return Dispatch.Violation;
    const reqId = i32[w] >>> 0;
    // Receipts first: a handle that arrived in a message this peer has since received is
    // usable by its next request, and a slice it received may be released. The peer
    // publishes its tail before writing such a request, so one look here is enough.
    if (this.runTarget !== null && (op !== OP_SEND || this.runTarget === peer)) this.flushRun();
    if (!peer.syncConsumed()) return Dispatch.Violation;
    // A request may only start when its verdicts are sure to fit (one per refused
    // destination of a partial multicast, else one).
    let need = 1;
    if (op === OP_SEND && len >= 12 && (i32[w + 1] & SEND_FLAG_PARTIAL) !== 0) {
      need = Math.min(i32[w + 2] >>> 0, MAX_DESTINATIONS) + 1;
    }
    if (peer.verdictFree < need) {
      // The peer writes the verdict tail: validate it like the descriptor tail.
      const free = peer.verdicts.free();
      if (free < 0 || free > peer.verdicts.slots) return Dispatch.Violation;
      peer.verdictFree = free;
      if (free < need) {
        peer.stalled = true;
        return Dispatch.Retry;
      }
    }
    let code = 0;
    switch (op) {
      case OP_SEND: {
        const stream = len >= 8 && (i32[w + 1] & SEND_FLAG_STREAM) !== 0;
        if (stream && peer.streamCode !== 0) {
          // Behind a refused post: refused the same way, so that order is kept.
          code = this.fail(peer.streamCode, peer.streamDetail, peer.streamResource, peer.streamUid);
          countRefused(peer, code);
          break;
        }
        code = this.send(peer, w, len);
        if (code !== 0) countRefused(peer, code);
        if ((i32[w + 1] & SEND_FLAG_WAIT) !== 0) {
          if (code === E_DQUOT) this.waiters.refused(peer, this.errUid);
          else if (code === 0) this.waiters.passed(peer);
        }
        if (code !== 0 && stream) {
          peer.streamCode = code;
          peer.streamDetail = this.errDetail;
          peer.streamResource = this.errResource;
          peer.streamUid = this.errUid;
        }
        break;
      }
      case OP_RESUME:
        peer.streamCode = 0;
        break;
      case OP_WAIT:
        if (len < 12) return Dispatch.Violation;
        this.waiters.wait(peer, i32[w + 1] >>> 0, i32[w + 2]);
        break;
      case OP_CREATE_NODE:
        code = this.createNode(peer);
        if (code === 0) {
          this.writeVerdict(peer, reqId, 0, 0, this.errDetail, 0);
          this.ack(peer, reqId);
          return Dispatch.Done;
        }
        break;
      case OP_RELEASE_HANDLE:
        if (len < 8) return Dispatch.Violation;
        code = this.releaseHandle(peer, i32[w + 1] >>> 0);
        break;
      case OP_RELEASE_SLICE:
        if (len < 8) return Dispatch.Violation;
        if (!this.releaseSlice(peer, i32[w + 1] >>> 0)) return Dispatch.Violation;
        break;
      case OP_RELEASE_SLICES: {
        if (len < 8) return Dispatch.Violation;
        const n = i32[w + 1] >>> 0;
        if (n > (len - 8) / 4) return Dispatch.Violation;
        // One ledger update for the whole batch.
        let count = 0, bytes = 0, ok = true;
        for (let i = 0; i < n; i++) {
          const b = this.freeSlice(peer, i32[w + 2 + i] >>> 0);
          if (b < 0) {
            ok = false;
            break;
          }
          count++;
          bytes += b;
        }
        if (count > 0) {
          peer.user.ledger.release(count, 0, bytes);
          peer.ledger.release(count, 0, bytes);
        }
        if (!ok) return Dispatch.Violation;
        break;
      }
      case OP_DESTROY_NODES: {
        if (len < 8) return Dispatch.Violation;
        const n = i32[w + 1] >>> 0;
        if (n > (len - 8) / 4) return Dispatch.Violation;
        code = this.destroyNodesRequest(peer, w + 2, n);
        break;
      }
      case OP_QUERY:
        this.writeQueryVerdict(peer, reqId);
        this.ack(peer, reqId);
        return Dispatch.Done;
      case OP_CLOSE:
        // Closed before the ack is seen, so that close() resolving means closed.
        Atomics.store(peer.ctl, CTL_STATE, STATE_CLOSED);
        this.ack(peer, reqId);
        this.publishDirty();
        this.disconnect(peer, STATE_CLOSED, REASON_NONE);
        return Dispatch.Done;
      default:
        return Dispatch.Violation;
    }
    if (code !== 0) this.writeVerdict(peer, reqId, code, this.errResource, this.errDetail, this.errUid);
    this.ack(peer, reqId);
    return Dispatch.Done;
  }

  private ack(peer: PeerState, reqId: number): void {
    if (reqId === 0) return;
    peer.acked = reqId;
    peer.ackDirty = true;
    this.markDirty(peer);
  }

  private fail(code: number, detail: number, resource = 0, uid = 0): number {
    this.errCode = code;
    this.errDetail = detail;
    this.errResource = resource;
    this.errUid = uid;
    return code;
  }

  // ---- SEND ---------------------------------------------------------------------------

  private send(sender: PeerState, w: number, len: number): number {
    const i32 = sender.out.i32;
    const flags = i32[w + 1];
    const ndest = i32[w + 2] >>> 0;
    const nh = i32[w + 3] >>> 0;
    const plen = i32[w + 4] >>> 0;
    this.txTag = flags & TAG_MASK;
    if (len < SEND_HEADER_WORDS * 4) return this.fail(E_INVAL, 0);
    // ndest 0 is bus1's empty transaction: validated like any send, it delivers and charges nothing.
    if (ndest > MAX_DESTINATIONS || nh > MAX_HANDLES_PER_MESSAGE) return this.fail(E_INVAL, 0);
    if (plen > this.config.maxMessageBytes) return this.fail(E_MSGSIZE, plen);
    const idsBytes = align8(4 * (SEND_HEADER_WORDS + ndest + nh));
    if (idsBytes + plen > len) return this.fail(E_INVAL, 0);
    const partial = (flags & SEND_FLAG_PARTIAL) !== 0;
    if (ndest === 1 && nh === 0 && !partial) {
      const r = this.sendUnicast(sender, w, plen, idsBytes);
      if (r >= 0) return r;
      // Refused by the quick check: the general path below gives the exact verdict.
    }
    this.flushRun();

    // Resolve destinations: all checks before any change.
    const epoch = ++this.epoch;
    const nodes = this.txNodes;
    const destIds = this.txDestIds;
    nodes.length = 0;
    destIds.length = 0;
    let idw = w + SEND_HEADER_WORDS;
    for (let i = 0; i < ndest; i++) {
      const id = i32[idw++] >>> 0;
      const h = sender.handles.get(id);
      if (h === undefined || h.refs - h.refsInFlight <= 0) return this.fail(E_NXIO, id);
      const node = h.node;
      if (node.txMark === epoch) return this.fail(E_NOTUNIQ, id);
      node.txMark = epoch;
      nodes.push(node);
      destIds.push(id);
    }
    const handles = this.txHandles;
    handles.length = 0;
    let alive = 0;
    for (let i = 0; i < nh; i++) {
      const id = i32[idw++] >>> 0;
      const h = sender.handles.get(id);
      if (h === undefined || h.refs - h.refsInFlight <= 0) return this.fail(E_NXIO, id);
      handles.push(h);
      if (!h.node.destroyed) alive++;
    }
    const bytes = messageBytes(plen, nh);
    const accepted = this.txAccepted;
    accepted.length = 0;
    if (!partial) {
      for (let i = 0; i < ndest; i++) {
        if (nodes[i].destroyed || !nodes[i].owner.open) return this.fail(E_SHUTDOWN, destIds[i]);
        accepted.push(true);
      }
      if (!this.checkDestinations(sender.uid, alive, bytes, -1)) return this.errCode;
    } else {
      // Per-destination results: accept greedily in the order given, report the others.
      let any = false;
      for (let i = 0; i < ndest; i++) {
        let ok = !(nodes[i].destroyed || !nodes[i].owner.open);
        if (!ok) this.fail(E_SHUTDOWN, destIds[i]);
        accepted.push(ok);
        if (ok) {
          ok = this.checkDestinations(sender.uid, alive, bytes, i);
          if (!ok) accepted[i] = false;
        }
        if (!ok) {
          this.writeVerdict(sender, i32[w] >>> 0, this.errCode, this.errResource, destIds[i], this.errUid);
          countRefused(sender, this.errCode);
        }
        any ||= ok;
      }
      if (!any) {
        this.errCode = 0;
        // Every destination refused: the per-destination verdicts say why.
        return 0;
      }
    }
    if (partial) {
      // The last check may have been a refused one: check exactly the accepted set again.
      this.rebuildCharges(sender.uid, alive, bytes, ndest);
      if (this.charges.check() !== null) throw new Error('internal: accepted destinations no longer pass the quota');
    }
    this.charges.apply();

    // Commit: one sequence number, destinations grouped per receiving peer (for `continue`).
    const seq = ++this.seq;
    const order = this.txOrder;
    order.length = 0;
    for (let i = 0; i < ndest; i++) if (accepted[i]) order.push(i);
    if (order.length > 1) sortByOwner(order, nodes);
    const payloadOff = (w << 2) + idsBytes;
    for (let k = 0; k < order.length; k++) {
      const node = nodes[order[k]];
      const target = node.owner;
      const cont = k + 1 < order.length && nodes[order[k + 1]].owner === target;
      this.deliver(sender, target, node, seq, cont, payloadOff, plen, bytes, alive, nh);
    }
    return 0;
  }

  /**
   * The common case, one destination and no handles, without the multicast machinery.
   * Consecutive ones from one uid to one receiving peer form a run: the receiver's
   * receipts are synced and its headroom (Ledger.headroom) read once, each message is
   * then checked with two comparisons, and the run is charged once (flushRun).
   * Returns 0 when delivered, an error code for a definite failure, or -1 when the quota
   * refused it on possibly stale receipts (the caller then takes the general path).
   */
  private sendUnicast(sender: PeerState, w: number, plen: number, idsBytes: number): number {
    const id = sender.out.i32[w + SEND_HEADER_WORDS] >>> 0;
    const h = sender.handles.get(id);
    if (h === undefined || h.refs - h.refsInFlight <= 0) return this.fail(E_NXIO, id);
    const node = h.node;
    const target = node.owner;
    if (node.destroyed || !target.open) return this.fail(E_SHUTDOWN, id);
    const uid = sender.uid;
    const bytes = messageBytes(plen, 0);
    if (target !== this.runTarget || uid !== this.runUid || this.runM + 1 > this.runHeadM || this.runB + bytes > this.runHeadB) {
      this.flushRun();
      this.syncPeer(target);
      const ul = target.user.ledger, pl = target.ledger;
      this.runHeadM = Math.min(ul.headroom(uid, MESSAGES), pl.headroom(uid, MESSAGES));
      this.runHeadB = Math.min(ul.headroom(uid, BYTES), pl.headroom(uid, BYTES));
      if (this.runHeadM < 1 || this.runHeadB < bytes) return -1;
      this.runTarget = target;
      this.runUid = uid;
    }
    this.runM++;
    this.runB += bytes;
    this.deliver(sender, target, node, ++this.seq, false, (w << 2) + idsBytes, plen, bytes, 0, 0);
    return 0;
  }

  /** Charge the open run of unicast sends, if any, and close it. */
  private flushRun(): void {
    const target = this.runTarget;
    if (target === null) return;
    this.runTarget = null;
    if (this.runM !== 0) {
      target.user.ledger.charge(this.runUid, this.runM, 0, this.runB);
      target.ledger.charge(this.runUid, this.runM, 0, this.runB);
    }
    this.runM = this.runB = 0;
  }

  /**
   * Quota check of every accepted destination up to `last` (all of them when -1), syncing
   * receipts first when it fails, so that a refusal is never caused by stale numbers.
   */
  private checkDestinations(senderUid: number, h: number, bytes: number, last: number): boolean {
    const end = last >= 0 ? last : this.txNodes.length - 1;
    for (let attempt = 0; attempt < 2; attempt++) {
      const cs = this.charges;
      cs.reset(senderUid);
      for (let i = 0; i <= end; i++) {
        if (!this.txAccepted[i]) continue;
        const target = this.txNodes[i].owner;
        if (attempt === 0) this.syncPeer(target);
        cs.add(target.user.ledger, 1, h, bytes);
        cs.add(target.ledger, 1, h, bytes);
      }
      const refused = cs.check();
      if (refused === null) return true;
      if (attempt === 0) {
        // Receipts at the user's other peers may not be accounted yet; an exact answer needs them.
        const user = this.users.peek(refused.ledger.owner);
        if (user !== undefined) for (const p of user.peers) this.syncPeer(p);
        continue;
      }
      this.fail(E_DQUOT, 0, refused.resource, refused.ledger.owner);
    }
    return false;
  }

  private rebuildCharges(senderUid: number, h: number, bytes: number, ndest: number): void {
    const cs = this.charges;
    cs.reset(senderUid);
    for (let i = 0; i < ndest; i++) {
      if (!this.txAccepted[i]) continue;
      const target = this.txNodes[i].owner;
      cs.add(target.user.ledger, 1, h, bytes);
      cs.add(target.ledger, 1, h, bytes);
    }
  }

  /** Write one data message into `target`'s pool and queue its descriptor. */
  private deliver(
    sender: PeerState, target: PeerState, node: BusNode, seq: number, cont: boolean,
    payloadOff: number, plen: number, bytes: number, handlesCharged: number, nh: number,
  ): void {
    const slot = target.pool.alloc(bytes);
    if (slot < 0) throw new Error(`internal: pool of peer ${target.id} full although accounting allowed ${bytes} bytes`);
    const offset = target.pool.offsetOf(slot);
    copyPayload(sender.outBuf, sender.out.i32, payloadOff, target.inBuf, target.inI32, offset, plen);
    let list: Handle[] | null = null;
    if (nh > 0) {
      list = [];
      let hw = (offset + ((plen + 3) & ~3)) >> 2;
      for (let i = 0; i < nh; i++) {
        const node2 = this.txHandles[i].node;
        if (node2.destroyed) {
          target.inI32[hw++] = INVALID_HANDLE;
          continue;
        }
        const th = this.install(target, node2);
        th.refsInFlight++;
        list.push(th);
        target.inI32[hw++] = th.id;
      }
    }
    const kindWord = KIND_DATA | (cont ? DESC_CONTINUE : 0) | (nh << DESC_NHANDLES_SHIFT) | this.txTag;
    countSent(sender, bytes);
    this.queueDescriptor(target, kindWord, node.ownerHandle.id, seq, sender.uid, offset, plen, slot, handlesCharged, list, null);
  }

  /** Give `peer` one more reference to `node` (creating its handle if needed). Charges nothing. */
  private install(peer: PeerState, node: BusNode): Handle {
    let h = node.holders.get(peer);
    if (h === undefined) {
      h = new NewHandle(peer.nextHandleId++, node, peer);
      node.holders.set(peer, h);
      peer.handles.set(h.id, h);
      if (peer !== node.owner) node.owner.cancelRelease(node);
    } else if (peer === node.owner) {
      // An extra reference of the owner to its own node withdraws an unread node-release too.
      node.owner.cancelRelease(node);
    }
    h.refs++;
    return h;
  }

  private queueDescriptor(
    target: PeerState, kindWord: number, dest: number, seq: number, uid: number, offset: number, bytes: number,
    slot: number, handlesCharged: number, list: Handle[] | null, node: BusNode | null,
  ): void {
    if (target.overflow.length === 0) {
      const pos = target.desc.position;
      const at = target.desc.reserve();
      if (at >= 0) {
        this.writeDescriptor(target, pos, at, kindWord, dest, seq, uid, offset, bytes, slot, handlesCharged, list);
        if (node !== null) node.releasePosition = pos;
        this.markDirty(target);
        return;
      }
    }
    const d: PendingDescriptor = {
      kindWord, destination: dest, seq, senderUid: uid, offset, bytes, slot, handlesCharged, handleList: list, node,
    };
    target.overflow.push(d);
    this.poll(target);
    if (node !== null) node.releaseOverflow = d;
    if (target.overflow.length > OVERFLOW_FACTOR * target.desc.slots) this.condemned.push(target);
  }

  private writeDescriptor(
    target: PeerState, pos: number, at: number, kindWord: number, dest: number, seq: number, uid: number,
    offset: number, bytes: number, slot: number, handlesCharged: number, list: Handle[] | null,
  ): void {
    const d = target.desc;
    d.i32[at + D_DEST] = dest;
    d.f64[(at >> 1) + D_SEQ_F64] = seq;
    d.f64[(at >> 1) + D_UID_F64] = uid;
    d.i32[at + D_OFFSET] = offset;
    d.i32[at + D_BYTES] = bytes;
    d.i32[at + D_KIND] = kindWord;
    // Receipts not yet accounted would be overwritten: account them first.
    if (((pos - target.syncedTail) >>> 0) >= target.fifoCapacity) this.syncPeer(target);
    target.ensureFifo(pos);
    const i = target.fifoIndex(pos);
    target.fifoUid[i] = uid;
    target.fifoSlot[i] = slot;
    target.fifoHandles[i] = handlesCharged;
    if (list !== null) target.fifoHandleList.set(pos, list);
    target.descDirty = true;
  }

  private flushOverflow(peer: PeerState): number {
    let moved = 0;
    const q = peer.overflow;
    while (moved < q.length) {
      const pos = peer.desc.position;
      const at = peer.desc.reserve();
      if (at < 0) break;
      const d = q[moved++];
      this.writeDescriptor(peer, pos, at, d.kindWord, d.destination, d.seq, d.senderUid, d.offset, d.bytes,
        d.slot, d.handlesCharged, d.handleList);
      if (d.node !== null && d.node.releaseOverflow === d) {
        d.node.releaseOverflow = null;
        d.node.releasePosition = pos;
      }
    }
    if (moved > 0) {
      q.splice(0, moved);
      this.markDirty(peer);
      this.publishDirty();
    }
    return moved;
  }

  /** Remember that `peer` has unpublished descriptors, verdicts or acks. */
  private markDirty(peer: PeerState): void {
    if (peer.inDirtyList) return;
    peer.inDirtyList = true;
    this.dirty.push(peer);
  }

  private publishDirty(): void {
    const d = this.dirty;
    for (let i = 0; i < d.length; i++) {
      const p = d[i];
      p.publish();
      if (p.wakePending && !p.inWakeList) {
        p.inWakeList = true;
        this.wakes.push(p);
      }
    }
    d.length = 0;
  }

  // ---- accounting helpers -------------------------------------------------------------

  /** Account receipts of `peer`; a peer whose tail is impossible is condemned. */
  private syncPeer(peer: PeerState): void {
    if (peer === this.runTarget) this.flushRun();
    if (peer.open && !peer.syncConsumed()) this.condemned.push(peer);
  }

  private checkOrSync(target: PeerState, senderUid: number, m: number, h: number, b: number): boolean {
    for (let attempt = 0; attempt < 2; attempt++) {
      const cs = this.charges;
      cs.reset(senderUid);
      cs.add(target.user.ledger, m, h, b);
      cs.add(target.ledger, m, h, b);
      const refused = cs.check();
      if (refused === null) return true;
      if (attempt === 0) {
        for (const p of target.user.peers) this.syncPeer(p);
        continue;
      }
      this.fail(E_DQUOT, 0, refused.resource, refused.ledger.owner);
    }
    return false;
  }

  private flushCondemned(): void {
    while (this.condemned.length > 0) {
      const p = this.condemned.pop()!;
      this.disconnect(p, STATE_DISCONNECTED, REASON_PROTOCOL);
    }
  }

  // ---- nodes and handles ----------------------------------------------------------------

  /** Create a node owned by `peer`; on success errDetail holds the owner's handle id. */
  private createNode(peer: PeerState): number {
    if (!this.checkOrSync(peer, peer.uid, 0, 1, 0)) return this.errCode;
    peer.user.ledger.chargeCommitted(peer.uid, 0, 1, 0);
    peer.ledger.chargeCommitted(peer.uid, 0, 1, 0);
    const node = new NewNode(peer);
    const h = this.install(peer, node);
    node.ownerHandle = h;
    peer.ownedNodes.add(node);
    this.errDetail = h.id;
    return 0;
  }

  private releaseHandle(peer: PeerState, id: number): number {
    const h = peer.handles.get(id);
    if (h === undefined || h.refs - h.refsInFlight <= 0) return this.fail(E_NXIO, id);
    const node = h.node;
    // The owner's references carried in messages it has not received yet are not its own yet.
    if (!node.destroyed && node.owner === peer && h.refs - h.refsInFlight === 1) return this.fail(E_BUSY, id);
    h.refs--;
    peer.user.ledger.release(0, 1, 0);
    peer.ledger.release(0, 1, 0);
    if (h.refs === 0) this.dropHandle(peer, h);
    else if (peer === node.owner) this.notifyIfReleased(node);
    return 0;
  }

  /**
   * node-release (bus1): the node's references besides the owner's own first one (those of
   * other holders, and extra ones the owner took to its own node) are all gone. Each such
   * last release is one transaction in the global order.
   */
  private notifyIfReleased(node: BusNode): void {
    const owner = node.owner;
    if (node.destroyed || !owner.open || node.foreignHolders !== 0 || node.ownerHandle.refs !== 1) return;
    const seq = ++this.seq;
    this.queueDescriptor(owner, KIND_NODE_RELEASE, node.ownerHandle.id, seq, owner.uid, 0, 0, -1, 0, null, node);
  }

  /** Remove a handle with no references left; tell the owner if it was the last foreign holder. */
  private dropHandle(peer: PeerState, h: Handle): void {
    const node = h.node;
    peer.handles.delete(h.id);
    node.holders.delete(peer);
    if (peer !== node.owner) this.notifyIfReleased(node);
  }

  private destroyNodesRequest(peer: PeerState, w: number, n: number): number {
    const i32 = peer.out.i32;
    const epoch = ++this.epoch;
    const nodes = this.txNodes;
    nodes.length = 0;
    for (let i = 0; i < n; i++) {
      const id = i32[w + i] >>> 0;
      const h = peer.handles.get(id);
      if (h === undefined || h.refs - h.refsInFlight <= 0) return this.fail(E_NXIO, id);
      if (h.node.owner !== peer) return this.fail(E_REMOTE, id);
      if (h.node.destroyed) return this.fail(E_STALE, id);
      if (h.node.txMark === epoch) return this.fail(E_NOTUNIQ, id);
      h.node.txMark = epoch;
      nodes.push(h.node);
    }
    this.destroyNodes(nodes);
    return 0;
  }

  /** One transaction: every holder of every node (owner included) learns of the destruction. */
  private destroyNodes(nodes: BusNode[]): void {
    if (nodes.length === 0) return;
    const seq = ++this.seq;
    // Group notifications per holder so that `continue` links a holder's consecutive ones.
    const perHolder = new Map<PeerState, number[]>();
    for (const node of nodes) {
      node.destroyed = true;
      node.owner.cancelRelease(node);
      node.owner.ownedNodes.delete(node);
      for (const [holder, h] of node.holders) {
        if (!holder.open) continue;
        let ids = perHolder.get(holder);
        if (ids === undefined) perHolder.set(holder, ids = []);
        ids.push(h.id);
      }
    }
    for (const [holder, ids] of perHolder) {
      for (let i = 0; i < ids.length; i++) {
        const kind = KIND_NODE_DESTROY | (i + 1 < ids.length ? DESC_CONTINUE : 0);
        this.queueDescriptor(holder, kind, ids[i], seq, nodes[0].owner.uid, 0, 0, -1, 0, null, null);
      }
    }
    this.publishDirty();
  }

  /** SLICE_RELEASE of a received slice (the caller synced receipts first). False: not a received slice. */
  private releaseSlice(peer: PeerState, offset: number): boolean {
    const bytes = this.freeSlice(peer, offset);
    if (bytes < 0) return false;
    peer.user.ledger.release(1, 0, bytes);
    peer.ledger.release(1, 0, bytes);
    return true;
  }

  /** Free a received slice; returns the bytes it was charged (for the caller to release), or -1 if it is not one. */
  private freeSlice(peer: PeerState, offset: number): number {
    const slot = peer.pool.slotAt(offset);
    if (slot < 0 || peer.pool.stateOf(slot) !== SLOT_RECEIVED) return -1;
    const bytes = peer.pool.chargedOf(slot);
    peer.pool.free(slot);
    return bytes;
  }

  // ---- verdicts -----------------------------------------------------------------------

  /** Reserve and fill a verdict slot's words; the caller checked there is room. Returns the slot's Int32 index. */
  private verdictSlot(peer: PeerState, reqId: number, code: number, resource: number, detail: number): number {
    peer.verdictFree--;
    const v = peer.verdicts;
    const at = v.reserve();
    if (at < 0) throw new Error('internal: verdict ring full although space was checked');
    v.i32[at + V_REQ] = reqId;
    v.i32[at + V_CODE] = code;
    v.i32[at + V_RESOURCE] = resource;
    v.i32[at + V_DETAIL] = detail;
    peer.verdictDirty = true;
    this.markDirty(peer);
    return at;
  }

  private writeVerdict(peer: PeerState, reqId: number, code: number, resource: number, detail: number, uid: number): void {
    if (reqId === 0) return;
    const at = this.verdictSlot(peer, reqId, code, resource, detail);
    peer.verdicts.f64[(at >> 1) + V_VALUES_F64] = uid;
  }

  /** A query's answer: the peer's limits, then what remains of them. */
  private writeQueryVerdict(peer: PeerState, reqId: number): void {
    if (reqId === 0) return;
    const at = this.verdictSlot(peer, reqId, 0, 0, 0);
    const f64 = peer.verdicts.f64;
    const f = (at >> 1) + V_VALUES_F64;
    for (let r = 0; r < 3; r++) {
      f64[f + r] = peer.ledger.max[r];
      f64[f + 3 + r] = peer.ledger.remaining[r];
    }
  }

  private lastError(op: string): BusError {
    const name = ERROR_NAMES[this.errCode - 1] ?? 'EINVAL';
    if (name === 'EDQUOT') {
      const res = (['messages', 'handles', 'bytes'] as const)[this.errResource];
      return new BusError('EDQUOT', `${op}: quota exceeded: uid ${this.errUid} will not take more ${res}`,
        { resource: res, uid: this.errUid });
    }
    return new BusError(name, `${op}: failed with ${name} (${this.errDetail})`);
  }

  // ---- disconnect and shutdown ------------------------------------------------------------

  /**
   * PEER_DISCONNECT: destroy the peer's nodes in one transaction, drop its queue (giving
   * every charge back), release its handles, and cut it off. Idempotent.
   */
  disconnect(peer: PeerState, state: number, reason: number): void {
    if (!peer.open) return;
    this.flushRun();
    peer.syncConsumed();
    this.waiters.forget(peer);
    this.names.delete(peer.id);
    // Closed first, so that its own nodes' destruction queues nothing to it.
    peer.open = false;
    this.destroyNodes([...peer.ownedNodes]);
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
      this.dropHandle(peer, h);
    }
    peer.user.peers.delete(peer);
    this.dropBell(peer);
    const at = this.peers.indexOf(peer);
    if (at >= 0) this.peers.splice(at, 1);
    this.byId.delete(peer.id);
    peer.shutDown(state, reason);
    this.publishDirty();
    peer.port.close();
  }

  private discharge(peer: PeerState, uid: number, h: number, bytes: number): void {
    peer.user.ledger.discharge(uid, 1, h, bytes);
    peer.ledger.discharge(uid, 1, h, bytes);
  }

  disconnectById(id: number, state: number, reason: number): void {
    const peer = this.byId.get(id);
    if (peer !== undefined) this.disconnect(peer, state, reason);
  }

  /** bus.close(): every peer sees ESHUTDOWN from now on. */
  closeAll(): void {
    if (this.closed) return;
    for (const peer of [...this.peers]) {
      // Mark first so that no node-destroy is queued to peers that are going away too.
      peer.shutDown(STATE_BUS_CLOSED, REASON_NONE);
    }
    for (const peer of [...this.peers]) peer.port.close();
    this.peers.length = 0;
    this.byId.clear();
    this.closed = true;
    // Anyone still ringing the doorbell wakes a coordinator that is gone; harmless.
    Atomics.notify(this.doorbellI32, BELL_COUNTER);
  }

  private assertOpen(): void {
    if (this.closed) throw new BusError('ESHUTDOWN', 'the bus is closed');
  }
}

const ERROR_NAMES: readonly BusErrorCode[] = [
  'EDQUOT', 'ENXIO', 'ESHUTDOWN', 'EMSGSIZE', 'EINVAL', 'ENOTUNIQ', 'EBUSY', 'EREMOTE', 'ESTALE',
];

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

/** Stable insertion sort of destination indices by owning peer (few destinations). */
function sortByOwner(order: number[], nodes: BusNode[]): void {
  for (let i = 1; i < order.length; i++) {
    const v = order[i];
    const key = nodes[v].owner.id;
    let j = i - 1;
    while (j >= 0 && nodes[order[j]].owner.id > key) {
      order[j + 1] = order[j];
      j--;
    }
    order[j + 1] = v;
  }
}

/** Payloads up to this size are copied word by word: cheaper than a native call. */
const WORD_COPY_MAX_BYTES = 256;

function copyPayload(
  src: Buffer, src32: Int32Array, srcOff: number, dst: Buffer, dst32: Int32Array, dstOff: number, n: number,
): void {
  if (n === 0) return;
  if (n <= WORD_COPY_MAX_BYTES && (srcOff & 3) === 0 && (dstOff & 3) === 0) {
    // Both ends are 4-aligned and the source record is padded to 8, so whole words are safe to read;
    // the destination slice is at least align8(n) bytes.
    const words = (n + 3) >> 2;
    let s = srcOff >> 2;
    let d = dstOff >> 2;
    for (let i = 0; i < words; i++) dst32[d++] = src32[s++];
    return;
  }
  src.copy(dst, dstOff, srcOff, srcOff + n);
}
