/*
 * CoordinatorCore: the state every part of the coordinator shares (src/coordinator/*.ts
 * hold it as `core`), and the few operations all of them need. Coordinator thread only.
 *
 * Holds: the configuration, users and peers, the global sequence number (`seq`: the
 * global order; only one transaction at a time takes the next one), the epoch used to
 * mark duplicates within one transaction, the quota ChargeSet scratch, the lists of
 * peers with unpublished output (`dirty`), with a deferred wake-up (`wakes`) and to be
 * cut off (`condemned`), the open run of unicast sends, and the error of the request
 * being processed (`fail()` sets it; `lastError()` turns it into a BusError).
 *
 * Invariants: an open run (runTarget) is charged (flushRun) before anything else may
 * look at or change the ledgers of its receiver or sender uid; every peer in `dirty` has
 * inDirtyList set and is published by the next publishDirty().
 */

import { codeNumber, BusError, type BusErrorCode } from '../errors.js';
import { ChargeSet, type Limits } from './ledger.js';
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
  // The open run of unicast sends (Transactions.sendUnicast): one sending uid to one
  // receiving peer, checked against the receiver's headroom and charged as one at
  // flushRun(). Flushed before anything else may look at or change those ledgers: any
  // other request, a sync of the receiver's receipts, the end of the sender's batch, a
  // disconnect.
  runTarget: PeerState | null = null;
  runUid = 0;
  runM = 0;
  runB = 0;
  runHeadM = 0;
  runHeadB = 0;
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
    d.length = 0;
  }

  /** Charge the open run of unicast sends, if any, and close it. */
  flushRun(): void {
    const target = this.runTarget;
    if (target === null) return;
    this.runTarget = null;
    if (this.runM !== 0) {
      target.user.ledger.charge(this.runUid, this.runM, 0, this.runB);
      target.ledger.charge(this.runUid, this.runM, 0, this.runB);
    }
    this.runM = this.runB = 0;
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
