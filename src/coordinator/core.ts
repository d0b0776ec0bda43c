/*
 * CoordinatorCore: the state every part of the coordinator shares (src/coordinator/*.ts
 * hold it as `core`), and the few operations all of them need. Coordinator thread only.
 *
 * Holds: the configuration, users and peers, the global sequence number (`seq`: the
 * global order; only one transaction at a time takes the next one), the epoch used to
 * mark duplicates within one transaction, the quota ChargeSet scratch, the lists of
 * peers with unpublished output (`dirty`), with a deferred wake-up (`wakes`) and to be
 * cut off (`condemned`), the open run of sends, and the error of the request being
 * processed (`fail()` sets it; `lastError()` turns it into a BusError).
 *
 * Runs: consecutive sends without handles from one sender to the same receivers (one
 * peer for unicasts, the same destination list for multicasts) are checked against the
 * receivers' headroom read once and charged as one (flushRun). Each send of the run puts
 * `runTimes[i]` messages and `runTimes[i]` times its bytes on `runLedgers[i]` (a ledger
 * reached by several destinations of one send is charged for each), so the run's limit
 * is min(headroom / times) over its ledgers: both quota rules are monotone and additive
 * in the amount (Ledger.headroom), so this admits exactly what per-send charging would.
 *
 * Invariants: an open run (runOpen) is charged (flushRun) before anything else may look
 * at or change the ledgers of its receivers or its sender uid; every peer in `dirty` has
 * inDirtyList set and is published by the next publishDirty().
 */

import { codeNumber, BusError, type BusErrorCode } from '../errors.js';
import { ChargeSet, MESSAGES, BYTES, type Ledger, type Limits } from './ledger.js';
import type { QuotaRule } from './quota.js';
import type { PeerState } from './peer-state.js';
import { Users } from './users.js';
import type { Waiters } from './waiters.js';

export interface CoordinatorConfig {
  userLimits: Limits;
  peerLimits: Partial<Limits>;
  users: Map<number, Partial<Limits>>;
  quota: QuotaRule;
  maxMessageBytes: number;
}

export const E_DQUOT = codeNumber('EDQUOT');
export const E_NXIO = codeNumber('ENXIO');
export const E_SHUTDOWN = codeNumber('ESHUTDOWN');
export const E_MSGSIZE = codeNumber('EMSGSIZE');
export const E_INVAL = codeNumber('EINVAL');
export const E_NOTUNIQ = codeNumber('ENOTUNIQ');
export const E_BUSY = codeNumber('EBUSY');
export const E_REMOTE = codeNumber('EREMOTE');
export const E_STALE = codeNumber('ESTALE');

/**
 * Empty a scratch list. `list.length = 0` goes through the generic length setter (about
 * 25-45 ns, even on an empty list); popping a few entries costs a few ns. The lists of
 * the send path hold at most a transaction's destinations or handles.
 */
export function clearList(list: unknown[]): void {
  while (list.length !== 0) list.pop();
}

/** Run kinds (CoordinatorCore.runKind). */
export const RUN_UNICAST = 1, RUN_MULTICAST = 2;

export class CoordinatorCore {
  readonly config: CoordinatorConfig;
  readonly users: Users<PeerState>;
  readonly peers: PeerState[] = [];
  readonly byId = new Map<number, PeerState>();
  /** Peer names given at createPeer (bus.spawn's worker name), for stats. */
  readonly names = new Map<number, string>();
  /** Waiting sends (set once by Coordinator: its sync callback needs the receipts part). */
  waiters!: Waiters;
  nextPeerId = 1;
  seq = 0;
  epoch = 0;
  closed = false;
  readonly charges = new ChargeSet();
  readonly dirty: PeerState[] = [];
  readonly condemned: PeerState[] = [];
  /** Peers with a deferred wake-up (publish() found them asleep with few descriptors). */
  readonly wakes: PeerState[] = [];
  // The open run of sends (Transactions.sendUnicast, Transactions.send). Flushed
  // before anything else may look at or change those ledgers: any other request, a sync
  // of a receiver's receipts, the end of the sender's batch, a disconnect.
  runOpen = false;
  /** The run's kind: RUN_UNICAST (key: runUid and runTargets[0]) or RUN_MULTICAST (key: the sender's destination list, kept by Transactions). */
  runKind = 0;
  runUid = 0;
  /** Sends in the run, and the sum of their message bytes. */
  runCount = 0;
  runBytes = 0;
  /** The most sends, and bytes per send summed, the run may hold (min over its ledgers of headroom / times). */
  runHeadCount = 0;
  runHeadBytes = 0;
  readonly runLedgers: Ledger[] = [];
  readonly runTimes: number[] = [];
  runLedgerCount = 0;
  /** The distinct receiving peers of the run (whose receipts must not be synced while it is open). */
  readonly runTargets: PeerState[] = [];
  runTargetCount = 0;
  // The error of the request being processed.
  errCode = 0;
  errDetail = 0;
  errResource = 0;
  errUid = 0;

  constructor(config: CoordinatorConfig) {
    this.config = config;
    this.users = new Users<PeerState>(config.userLimits, config.users, config.quota);
  }

  fail(code: number, detail: number, resource = 0, uid = 0): number {
    this.errCode = code;
    this.errDetail = detail;
    this.errResource = resource;
    this.errUid = uid;
    return code;
  }

  /** Remember that `peer` has unpublished descriptors, verdicts or acks. */
  markDirty(peer: PeerState): void {
    if (peer.inDirtyList) return;
    peer.inDirtyList = true;
    this.dirty.push(peer);
  }

  publishDirty(): void {
    const d = this.dirty;
    for (let i = 0; i < d.length; i++) {
      const p = d[i];
      p.publish();
      if (p.wakePending && !p.inWakeList) {
        p.inWakeList = true;
        this.wakes.push(p);
      }
    }
    clearList(d);
  }

  /** Charge the open run of sends, if any, and close it. */
  flushRun(): void {
    if (!this.runOpen) return;
    this.runOpen = false;
    const c = this.runCount, b = this.runBytes, uid = this.runUid;
    if (c !== 0) {
      for (let i = 0; i < this.runLedgerCount; i++) {
        const k = this.runTimes[i];
        this.runLedgers[i].charge(uid, k * c, 0, k * b);
      }
    }
    this.runCount = this.runBytes = 0;
    for (let i = 0; i < this.runLedgerCount; i++) this.runLedgers[i] = undefined!; // keep no closed peer alive
    for (let i = 0; i < this.runTargetCount; i++) this.runTargets[i] = undefined!;
    this.runLedgerCount = this.runTargetCount = 0;
  }

  /** True when `peer` receives in the open run (its receipts must wait for flushRun). */
  inRun(peer: PeerState): boolean {
    if (!this.runOpen) return false;
    for (let i = 0; i < this.runTargetCount; i++) if (this.runTargets[i] === peer) return true;
    return false;
  }

  /**
   * Open a run of sends from `uid` (the previous one must be flushed); then runAdd() each
   * destination of one send (a peer named twice counts twice) and runLimit().
   */
  runBegin(kind: number, uid: number): void {
    this.runOpen = true;
    this.runKind = kind;
    this.runUid = uid;
    this.runCount = this.runBytes = 0;
    this.runLedgerCount = this.runTargetCount = 0;
  }

  runAdd(target: PeerState): void {
    let seen = false;
    for (let i = 0; i < this.runTargetCount; i++) if (this.runTargets[i] === target) seen = true;
    if (!seen) this.runTargets[this.runTargetCount++] = target;
    this.runAddLedger(target.user.ledger);
    this.runAddLedger(target.ledger);
  }

  private runAddLedger(ledger: Ledger): void {
    for (let i = 0; i < this.runLedgerCount; i++) {
      if (this.runLedgers[i] === ledger) {
        this.runTimes[i]++;
        return;
      }
    }
    const n = this.runLedgerCount++;
    this.runLedgers[n] = ledger;
    this.runTimes[n] = 1;
  }

  /** Read the run's ledgers' headroom once: the run may hold runHeadCount sends of runHeadBytes in all. */
  runLimit(): void {
    let count = Infinity, bytes = Infinity;
    for (let i = 0; i < this.runLedgerCount; i++) {
      const l = this.runLedgers[i], k = this.runTimes[i];
      count = Math.min(count, Math.floor(l.headroom(this.runUid, MESSAGES) / k));
      bytes = Math.min(bytes, Math.floor(l.headroom(this.runUid, BYTES) / k));
    }
    this.runHeadCount = count;
    this.runHeadBytes = bytes;
  }

  assertOpen(): void {
    if (this.closed) throw new BusError('ESHUTDOWN', 'the bus is closed');
  }

  lastError(op: string): BusError {
    const name = ERROR_NAMES[this.errCode - 1] ?? 'EINVAL';
    if (name === 'EDQUOT') {
      const res = (['messages', 'handles', 'bytes'] as const)[this.errResource];
      return new BusError('EDQUOT', `${op}: quota exceeded: uid ${this.errUid} will not take more ${res}`,
        { resource: res, uid: this.errUid });
    }
    return new BusError(name, `${op}: failed with ${name} (${this.errDetail})`);
  }
}

const ERROR_NAMES: readonly BusErrorCode[] = [
  'EDQUOT', 'ENXIO', 'ESHUTDOWN', 'EMSGSIZE', 'EINVAL', 'ENOTUNIQ', 'EBUSY', 'EREMOTE', 'ESTALE',
];
