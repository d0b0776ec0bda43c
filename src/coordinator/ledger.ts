/*
 * Accounting state for one level of one receiver (semantics.md 5.1, 5.2): one Ledger per
 * receiving user and one per receiving peer, each holding three resources (messages,
 * handles, bytes). ChargeSet gathers what one send needs from every Ledger it touches so
 * a multicast is checked whole before anything is charged.
 *
 * Invariants, per resource, at every point between two calls:
 *   0 <= remaining <= max
 *   max = remaining + inflight + committed   (committed: received, not yet released)
 *   inflight = the owner's own in-flight amount + the sum of every foreign share
 *   every value is a safe integer, so double arithmetic on them is exact
 *   sharers(r) = foreign uids whose share of r is nonzero; sharerCount = foreign uids
 *   whose share is nonzero on any resource
 * A mutation that would break one of these throws and changes nothing: that is a
 * coordinator bug (a commit of more than was in flight, a double release...), and
 * failing loudly beats a quota that drifts. check() never throws; refusing is its answer.
 *
 * Sharer counting is per resource. The spec states the rule per resource with n =
 * "foreign uids that currently hold a share", a uid leaving n when its share returns to
 * zero, so a uid that only has bytes in flight does not shrink anyone's handle quota.
 * (dbus-broker itself counts actor objects per user across all slots, its own uid
 * included while it has charges; the vectors cover one resource and cannot tell.)
 *
 * Hot path (check, charge, commit, discharge, release, ChargeSet) allocates nothing once
 * a sending uid has been seen: its share is a preallocated array of three doubles, kept even when
 * it drops back to zero, so a uid that comes and goes does not churn the heap.
 *
 * Only the coordinator thread owns Ledgers and ChargeSets; nothing here is shared memory.
 */

import { DEFAULT_QUOTA_RULE, QUOTA_RULES, type QuotaRule, quotaAllows, selfAllows } from './quota.js';

export const MESSAGES = 0, HANDLES = 1, BYTES = 2;
export const RESOURCE_COUNT = 3;
export const RESOURCE_NAMES = ['messages', 'handles', 'bytes'] as const;
export type ResourceName = typeof RESOURCE_NAMES[number];
export interface Limits { messages: number; handles: number; bytes: number }

/** check() result meaning "every resource allowed". */
export const ALLOWED = -1;

/* ChargeSet marks the Ledgers it has gathered on the Ledger itself (O(1) aggregation, no
 * Map per send); symbols keep those marks out of the Ledger's public shape. */
const CS_STAMP: unique symbol = Symbol('ChargeSet.stamp');
const CS_SLOT: unique symbol = Symbol('ChargeSet.slot');

/* Stamps are global so that two ChargeSets can never mistake each other's marks for
 * their own; 0 is never handed out, so a fresh Ledger is unmarked. */
let nextStamp = 1;

const INITIAL_CHARGE_SET_CAPACITY = 16;

function isSafeCount(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

function validCounts(m: number, h: number, b: number): boolean {
  return Number.isSafeInteger(m) && Number.isSafeInteger(h) && Number.isSafeInteger(b) && m >= 0 && h >= 0 && b >= 0;
}

/**
 * One of a Ledger's arrays of RESOURCE_COUNT counts: a plain array of doubles. Every
 * peer has two ledgers (its own and, with a uid of its own, its user's), so their size is
 * an idle peer's cost: a plain array is 72 bytes, where a Float64Array is a view, an
 * ArrayBuffer and a backing store outside the heap that the collector must track (some
 * 600 bytes a ledger, and the coordinator's scavenges slowed by them while thousands of
 * peers are created). The literal's 0.5s make its elements doubles from the start, so
 * every Words array has the same elements kind and the hot paths stay monomorphic.
 */
export type Words = number[];

function words(): Words {
  const a = [0.5, 0.5, 0.5];
  a[MESSAGES] = 0;
  a[HANDLES] = 0;
  a[BYTES] = 0;
  return a;
}

function allZero(a: Words): boolean {
  return a[MESSAGES] === 0 && a[HANDLES] === 0 && a[BYTES] === 0;
}

export class Ledger {
  /** The uid whose resources these are; its own sends are limited by remaining only. */
  readonly owner: number;
  readonly rule: QuotaRule;
  // An idle peer's ledgers use only max and remaining (its node's handle is charged as
  // received); the other three arrays are made at their first use, all zero.
  readonly max = words();
  readonly remaining = words();
  #inflight: Words | null = null;
  #selfInflight: Words | null = null;
  #sharersByResource: Words | null = null;

  /** Everything charged and not yet received, the owner's own sends included. */
  get inflight(): Words {
    return this.#inflight ??= words();
  }

  private get selfInflight(): Words {
    return this.#selfInflight ??= words();
  }

  private get sharersByResource(): Words {
    return this.#sharersByResource ??= words();
  }

  /** Made at the first foreign charge: an idle peer's ledger has none. */
  private shareBySender: Map<number, Words> | null = null;
  // One-entry cache of shareBySender: a burst of sends usually comes from one uid.
  private lastSender = -1;
  private lastShare: Words | undefined = undefined;
  private sharersAny = 0;
  /** Bumped whenever something is given back (receipt, discharge, release): waiting sends watch it (waiters.ts). */
  giveBacks = 0;

  [CS_STAMP] = 0;
  [CS_SLOT] = 0;

  constructor(owner: number, max: Limits, rule: QuotaRule = DEFAULT_QUOTA_RULE) {
    if (!QUOTA_RULES.includes(rule)) throw new RangeError(`unknown quota rule ${String(rule)}`);
    this.owner = owner;
    this.rule = rule;
    for (let r = 0; r < RESOURCE_COUNT; r++) {
      const limit = max[RESOURCE_NAMES[r]];
      if (!isSafeCount(limit)) {
        throw new RangeError(`${RESOURCE_NAMES[r]} limit must be a non-negative safe integer, got ${limit}`);
      }
      this.max[r] = limit;
      this.remaining[r] = limit;
    }
  }

  /** Live view of `uid`'s in-flight share (may be all zeros); undefined for the owner and for uids never seen. Do not mutate. */
  shareOf(uid: number): Words | undefined {
    return this.shareBySender?.get(uid);
  }

  /** Foreign uids with a nonzero share on at least one resource. */
  get sharerCount(): number {
    return this.sharersAny;
  }

  /** Foreign uids with a nonzero share of `resource`: the n of the polynomial rule, before counting a newcomer. */
  sharers(resource: number): number {
    return this.sharersByResource[resource] ?? 0;
  }

  /** Nonzero shares, as live views; for introspection only (allocates). */
  *shares(): IterableIterator<[number, Words]> {
    if (this.shareBySender === null) return;
    for (const entry of this.shareBySender) {
      if (!allZero(entry[1])) yield entry;
    }
  }

  /** True when nothing is charged: every resource at max, nothing in flight. */
  atRest(): boolean {
    for (let r = 0; r < RESOURCE_COUNT; r++) {
      if (this.remaining[r] !== this.max[r] || this.inflight[r] !== 0) return false;
    }
    return this.sharersAny === 0;
  }

  /** ALLOWED (-1) if `sender` may charge (m, h, b), else the index of the first resource refused. Changes nothing, never throws. */
  check(sender: number, m: number, h: number, b: number): number {
    const rem = this.remaining;
    if (sender === this.owner) {
      if (!selfAllows(rem[MESSAGES], m)) return MESSAGES;
      if (!selfAllows(rem[HANDLES], h)) return HANDLES;
      if (!selfAllows(rem[BYTES], b)) return BYTES;
      return ALLOWED;
    }
    const share = this.lookupShare(sender);
    // Amounts of 0 are always allowed; skipping them is the common case (no handles).
    if (m !== 0 && !this.allows(share, MESSAGES, m)) return MESSAGES;
    if (h !== 0 && !this.allows(share, HANDLES, h)) return HANDLES;
    if (b !== 0 && !this.allows(share, BYTES, b)) return BYTES;
    return ALLOWED;
  }

  /**
   * The largest amount of resource `r` that `sender` may charge now: check() allows every
   * amount up to it and none above. Both rules are monotone in the amount, and charging
   * c1 then c2 passes exactly when charging c1 + c2 at once does (half: s + 2c <= R;
   * polynomial: s*n + c(n + 1) <= R, with R and s moving together), so a run of sends
   * may be checked against this once and charged as one. Exact: every operand is a safe
   * integer below 2^33.
   */
  headroom(sender: number, r: number): number {
    const rem = this.remaining[r];
    if (sender === this.owner) return rem;
    const share = this.lookupShare(sender);
    const s = share === undefined ? 0 : share[r];
    if (this.rule === 'half') return rem >= s ? Math.floor((rem - s) / 2) : 0;
    const n = this.sharersByResource[r] + (s === 0 ? 1 : 0);
    const shareTerm = s * n;
    return shareTerm <= rem ? Math.floor((rem - shareTerm) / (n + 1)) : 0;
  }

  /** Put (m, h, b) in flight from `sender` (a share unless sender is the owner). The caller has checked. */
  charge(sender: number, m: number, h: number, b: number): void {
    const rem = this.remaining;
    if (!validCounts(m, h, b)) this.badCounts('charge', m, h, b);
    if (m > rem[MESSAGES] || h > rem[HANDLES] || b > rem[BYTES]) this.overRemaining('charge', m, h, b);
    if (sender === this.owner) {
      addInto(this.selfInflight, m, h, b);
    } else {
      let share = this.lookupShare(sender);
      if (share === undefined) {
        share = words();
        (this.shareBySender ??= new Map()).set(sender, share);
        this.lastSender = sender;
        this.lastShare = share;
      }
      const wasIdle = allZero(share);
      const byResource = this.sharersByResource;
      if (m !== 0) {
        if (share[MESSAGES] === 0) byResource[MESSAGES]++;
        share[MESSAGES] += m;
      }
      if (h !== 0) {
        if (share[HANDLES] === 0) byResource[HANDLES]++;
        share[HANDLES] += h;
      }
      if (b !== 0) {
        if (share[BYTES] === 0) byResource[BYTES]++;
        share[BYTES] += b;
      }
      if (wasIdle && !allZero(share)) this.sharersAny++;
    }
    subtractFrom(rem, m, h, b);
    addInto(this.inflight, m, h, b);
  }

  /** A receive: (m, h, b) stop being in flight from `sender` and stay charged until released. */
  commit(sender: number, m: number, h: number, b: number): void {
    this.leaveFlight('commit', sender, m, h, b);
    this.giveBacks++;
  }

  /** Dropped unreceived: (m, h, b) leave flight and return to remaining. */
  discharge(sender: number, m: number, h: number, b: number): void {
    this.leaveFlight('discharge', sender, m, h, b);
    addInto(this.remaining, m, h, b);
    this.giveBacks++;
  }

  /** Received resources given back (SLICE_RELEASE, HANDLE_RELEASE). */
  release(m: number, h: number, b: number): void {
    if (!validCounts(m, h, b)) this.badCounts('release', m, h, b);
    const max = this.max;
    const rem = this.remaining;
    const inf = this.inflight;
    if (m > max[MESSAGES] - rem[MESSAGES] - inf[MESSAGES]
      || h > max[HANDLES] - rem[HANDLES] - inf[HANDLES]
      || b > max[BYTES] - rem[BYTES] - inf[BYTES]) {
      for (let r = 0; r < RESOURCE_COUNT; r++) {
        const amount = r === MESSAGES ? m : r === HANDLES ? h : b;
        const committed = max[r] - rem[r] - inf[r];
        if (amount > committed) {
          throw new Error(`ledger ${this.owner}: release of ${amount} ${RESOURCE_NAMES[r]} exceeds the ${committed} received and not released`);
        }
      }
    }
    addInto(rem, m, h, b);
    this.giveBacks++;
  }

  /** Charge straight to "received" (an owner's handle transfer: nothing is in flight to commit later). The caller has checked.
   *  `sender` is taken for symmetry with charge(); no share is left, so only remaining moves. */
  chargeCommitted(sender: number, m: number, h: number, b: number): void {
    if (!validCounts(m, h, b)) this.badCounts('chargeCommitted', m, h, b);
    const rem = this.remaining;
    if (m > rem[MESSAGES] || h > rem[HANDLES] || b > rem[BYTES]) this.overRemaining('chargeCommitted', m, h, b);
    subtractFrom(rem, m, h, b);
  }

  private lookupShare(sender: number): Words | undefined {
    if (sender === this.lastSender) return this.lastShare;
    const share = this.shareBySender?.get(sender);
    // Only found entries are cached: entries are never deleted, so a hit stays valid.
    if (share !== undefined) {
      this.lastSender = sender;
      this.lastShare = share;
    }
    return share;
  }

  private allows(share: Words | undefined, r: number, amount: number): boolean {
    const s = share === undefined ? 0 : share[r];
    // n counts this sender too; a sender without a share of r would join the sharers
    const n = this.sharersByResource[r] + (s === 0 ? 1 : 0);
    return quotaAllows(this.rule, this.remaining[r], s, amount, n);
  }





  private leaveFlight(op: string, sender: number, m: number, h: number, b: number): void {
    if (!validCounts(m, h, b)) this.badCounts(op, m, h, b);
    if (sender === this.owner) {
      const held = this.selfInflight;
      if (m > held[MESSAGES] || h > held[HANDLES] || b > held[BYTES]) this.requireWithin(op, sender, held, m, h, b);
      subtractFrom(held, m, h, b);
    } else {
      const share = this.lookupShare(sender);
      if (share === undefined) {
        if (m === 0 && h === 0 && b === 0) return;
        throw new Error(`ledger ${this.owner}: ${op} from uid ${sender}, which has nothing in flight`);
      }
      if (m > share[MESSAGES] || h > share[HANDLES] || b > share[BYTES]) this.requireWithin(op, sender, share, m, h, b);
      const wasIdle = allZero(share);
      const byResource = this.sharersByResource;
      if (m !== 0 && (share[MESSAGES] -= m) === 0) byResource[MESSAGES]--;
      if (h !== 0 && (share[HANDLES] -= h) === 0) byResource[HANDLES]--;
      if (b !== 0 && (share[BYTES] -= b) === 0) byResource[BYTES]--;
      if (!wasIdle && allZero(share)) this.sharersAny--;
    }
    subtractFrom(this.inflight, m, h, b);
  }

  private badCounts(op: string, m: number, h: number, b: number): never {
    throw new RangeError(`ledger ${this.owner}: ${op}(${m}, ${h}, ${b}) needs non-negative safe integers`);
  }

  private overRemaining(op: string, m: number, h: number, b: number): never {
    for (let r = 0; r < RESOURCE_COUNT; r++) {
      const amount = r === MESSAGES ? m : r === HANDLES ? h : b;
      if (amount > this.remaining[r]) {
        throw new Error(`ledger ${this.owner}: ${op} of ${amount} ${RESOURCE_NAMES[r]} exceeds the ${this.remaining[r]} remaining (unchecked charge)`);
      }
    }
    throw new Error(`ledger ${this.owner}: ${op} exceeds remaining`);
  }





  private requireWithin(op: string, sender: number, held: Words, m: number, h: number, b: number): void {
    for (let r = 0; r < RESOURCE_COUNT; r++) {
      const amount = r === MESSAGES ? m : r === HANDLES ? h : b;
      if (amount > held[r]) {
        throw new Error(`ledger ${this.owner}: ${op} of ${amount} ${RESOURCE_NAMES[r]} from uid ${sender} exceeds the ${held[r]} in flight`);
      }
    }
  }
}

function addInto(a: Words, m: number, h: number, b: number): void {
  a[MESSAGES] += m;
  a[HANDLES] += h;
  a[BYTES] += b;
}

function subtractFrom(a: Words, m: number, h: number, b: number): void {
  a[MESSAGES] -= m;
  a[HANDLES] -= h;
  a[BYTES] -= b;
}

/** Why a ChargeSet was refused. The object is reused: read it before the next check() or reset(). */
export interface ChargeRefusal { ledger: Ledger; resource: number }

/**
 * What one send needs from every Ledger it reaches, summed per Ledger (a multicast to
 * several peers of one user hits that user's Ledger once per peer, and the rule must see
 * the total, not each part alone). Use: reset(sender), add()..., check(), and apply()
 * only after check() returned null. Reusable across sends; allocates only when it grows.
 * A Ledger can be gathered by one ChargeSet at a time: building two at once that share a
 * Ledger is detected at check() and throws.
 */
export class ChargeSet {
  private sender = 0;
  private stamp = nextStamp++;
  private count = 0;
  private ledgers: (Ledger | undefined)[] = [];
  private amounts = new Float64Array(INITIAL_CHARGE_SET_CAPACITY * RESOURCE_COUNT);
  private checked = false;
  private refusal: ChargeRefusal | null = null;

  /** Start gathering a new send from `sender`. */
  reset(sender: number): void {
    for (let i = 0; i < this.count; i++) this.ledgers[i] = undefined; // do not keep closed peers' Ledgers alive
    this.sender = sender;
    this.stamp = nextStamp++;
    this.count = 0;
    this.checked = false;
  }

  /** Add (m, h, b) for `ledger`, summing with what it already holds in this set. */
  add(ledger: Ledger, m: number, h: number, b: number): void {
    // Integers beyond 2^53 are let through: the sum is then refused as EDQUOT by check().
    // Negative or fractional amounts are a caller bug, and could cancel real charges.
    if (!isAmount(m) || !isAmount(h) || !isAmount(b)) {
      throw new RangeError(`ChargeSet.add(${m}, ${h}, ${b}) needs non-negative integers`);
    }
    this.checked = false;
    let base: number;
    if (ledger[CS_STAMP] === this.stamp) {
      base = ledger[CS_SLOT] * RESOURCE_COUNT;
      this.amounts[base + MESSAGES] += m;
      this.amounts[base + HANDLES] += h;
      this.amounts[base + BYTES] += b;
      return;
    }
    const slot = this.count++;
    base = slot * RESOURCE_COUNT;
    if (base + RESOURCE_COUNT > this.amounts.length) {
      const grown = new Float64Array(this.amounts.length * 2);
      grown.set(this.amounts);
      this.amounts = grown;
    }
    this.ledgers[slot] = ledger;
    this.amounts[base + MESSAGES] = m;
    this.amounts[base + HANDLES] = h;
    this.amounts[base + BYTES] = b;
    ledger[CS_STAMP] = this.stamp;
    ledger[CS_SLOT] = slot;
  }

  /** null when every Ledger allows its sum; else the first refused (insertion order). Changes nothing. */
  check(): ChargeRefusal | null {
    this.checked = false;
    const amounts = this.amounts;
    for (let i = 0; i < this.count; i++) {
      const ledger = this.ledgers[i]!;
      if (ledger[CS_STAMP] !== this.stamp || ledger[CS_SLOT] !== i) {
        throw new Error(`ChargeSet: ledger ${ledger.owner} was gathered by another ChargeSet while this one was being built`);
      }
      const base = i * RESOURCE_COUNT;
      const resource = ledger.check(this.sender, amounts[base + MESSAGES], amounts[base + HANDLES], amounts[base + BYTES]);
      if (resource !== ALLOWED) {
        if (this.refusal === null) this.refusal = { ledger, resource };
        this.refusal.ledger = ledger;
        this.refusal.resource = resource;
        return this.refusal;
      }
    }
    this.checked = true;
    return null;
  }

  /** Charge every gathered sum. Only after check() returned null with nothing added since. */
  apply(): void {
    if (!this.checked) throw new Error('ChargeSet.apply() without a passing check() first');
    this.checked = false;
    const amounts = this.amounts;
    for (let i = 0; i < this.count; i++) {
      const base = i * RESOURCE_COUNT;
      this.ledgers[i]!.charge(this.sender, amounts[base + MESSAGES], amounts[base + HANDLES], amounts[base + BYTES]);
    }
  }
}

function isAmount(x: number): boolean {
  return Number.isInteger(x) && x >= 0;
}
