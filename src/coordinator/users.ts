/*
 * Users (bus1 user.c): one per uid that has ever had a peer, holding the uid-level
 * ledger that every peer of that uid is charged against in addition to its own.
 * Coordinator thread only. A user outlives its peers, so that usage(uid) still answers
 * (and shows every counter back at its maximum) after they have all disconnected.
 */

import { Ledger, type Limits } from './ledger.js';
import type { QuotaRule } from './quota.js';
import { Counters } from './stats.js';

export const DEFAULT_USER_LIMITS: Limits = { messages: 16384, handles: 65536, bytes: 16 * 1024 * 1024 };

export class UserState<P> {
  readonly uid: number;
  readonly ledger: Ledger;
  readonly peers = new Set<P>();
  readonly stats = new Counters();

  constructor(uid: number, max: Limits, rule: QuotaRule) {
    this.uid = uid;
    this.ledger = new Ledger(uid, max, rule);
  }
}

export class Users<P> {
  private readonly byUid = new Map<number, UserState<P>>();
  private readonly userLimits: Limits;
  private readonly overrides: Map<number, Partial<Limits>>;
  private readonly rule: QuotaRule;

  constructor(userLimits: Limits, overrides: Map<number, Partial<Limits>>, rule: QuotaRule) {
    this.userLimits = userLimits;
    this.overrides = overrides;
    this.rule = rule;
  }

  limitsOf(uid: number): Limits {
    return { ...this.userLimits, ...this.overrides.get(uid) };
  }

  get(uid: number): UserState<P> {
    let user = this.byUid.get(uid);
    if (user === undefined) {
      user = new UserState<P>(uid, this.limitsOf(uid), this.rule);
      this.byUid.set(uid, user);
    }
    return user;
  }

  peek(uid: number): UserState<P> | undefined {
    return this.byUid.get(uid);
  }

  all(): IterableIterator<UserState<P>> {
    return this.byUid.values();
  }
}
