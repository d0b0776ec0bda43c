/*
 * Ledger and ChargeSet against a reference model kept as plain objects with BigInt
 * arithmetic, over random sequences of sends (single and multicast, from foreign uids and
 * from the owner itself), receives, drops, releases and direct committed charges, under
 * both rules. The model recomputes shares from the list of in-flight charges rather than
 * keeping running totals, so "a share is the sum of its uid's in-flight charges" is
 * checked, not assumed. Then a few targeted cases for the invariant violations that
 * must throw.
 */

import test, { type ExecutionContext } from 'ava';
import { testProp, fc } from '@fast-check/ava';
import type { QuotaRule } from '../src/coordinator/quota.js';
import {
  ALLOWED, BYTES, ChargeSet, HANDLES, Ledger, MESSAGES, RESOURCE_COUNT, RESOURCE_NAMES, type ChargeRefusal, type Limits,
} from '../src/coordinator/ledger.js';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const LEDGER_COUNT = 4;
/** Few uids, so senders collide with each other and with ledger owners. */
const UIDS = [0, 1, 2, 3, 4];
const MAX_OPS = 60;
const MAX_MULTICAST_PARTS = 6;
const RUNS = 400;

type Triple = [number, number, number];

/* ---- reference model ---- */

interface Charge { ledger: number; uid: number; amounts: bigint[] }

interface Model {
  owners: number[];
  rules: QuotaRule[];
  max: bigint[][];
  remaining: bigint[][];
  inflight: Charge[];   // charged, not yet received
  committed: Charge[];  // received (or charged committed), not yet released
}

function modelShare(m: Model, ledger: number, uid: number, r: number): bigint {
  let sum = 0n;
  for (const c of m.inflight) if (c.ledger === ledger && c.uid === uid && uid !== m.owners[ledger]) sum += c.amounts[r]!;
  return sum;
}

function modelSharers(m: Model, ledger: number, r: number): number {
  return UIDS.filter((uid) => modelShare(m, ledger, uid, r) > 0n).length;
}

function modelSharersAny(m: Model, ledger: number): number {
  return UIDS.filter((uid) => [0, 1, 2].some((r) => modelShare(m, ledger, uid, r) > 0n)).length;
}

/** -1 or the first refused resource; `amounts` may be sums beyond 2^53 (then refused). */
function modelCheck(m: Model, ledger: number, sender: number, amounts: bigint[]): number {
  for (let r = 0; r < RESOURCE_COUNT; r++) {
    const c = amounts[r]!;
    const R = m.remaining[ledger]![r]!;
    let ok: boolean;
    if (c > BigInt(MAX_SAFE)) ok = false;
    else if (c === 0n) ok = true;
    else if (sender === m.owners[ledger]) ok = c <= R;
    else {
      const s = modelShare(m, ledger, sender, r);
      const n = BigInt(modelSharers(m, ledger, r) + (s === 0n ? 1 : 0));
      ok = m.rules[ledger] === 'half' ? s + 2n * c <= R : (s + c) * (n + 1n) - s <= R;
    }
    if (!ok) return r;
  }
  return -1;
}

function modelTake(m: Model, ledger: number, amounts: bigint[]): void {
  for (let r = 0; r < RESOURCE_COUNT; r++) m.remaining[ledger]![r]! -= amounts[r]!;
}

function modelGive(m: Model, ledger: number, amounts: bigint[]): void {
  for (let r = 0; r < RESOURCE_COUNT; r++) m.remaining[ledger]![r]! += amounts[r]!;
}

/* ---- comparing the two ---- */

function assertSame(t: ExecutionContext, m: Model, ledgers: Ledger[], where: string): void {
  for (let l = 0; l < LEDGER_COUNT; l++) {
    const ledger = ledgers[l]!;
    for (let r = 0; r < RESOURCE_COUNT; r++) {
      const at = `${where}, ledger ${l}, ${RESOURCE_NAMES[r]}`;
      const remaining = ledger.remaining[r]!;
      t.is(BigInt(remaining), m.remaining[l]![r], `${at}: remaining`);
      t.true(Number.isSafeInteger(remaining) && remaining >= 0 && remaining <= ledger.max[r]!, `${at}: 0 <= remaining <= max`);
      t.is(ledger.sharers(r), modelSharers(m, l, r), `${at}: sharers`);
      let inflight = 0n;
      for (const c of m.inflight) if (c.ledger === l) inflight += c.amounts[r]!;
      t.is(BigInt(ledger.inflight[r]!), inflight, `${at}: inflight`);
      for (const uid of UIDS) {
        const share = ledger.shareOf(uid);
        const value = share === undefined ? 0 : share[r]!;
        t.true(value >= 0, `${at}: share of ${uid} negative`);
        t.is(BigInt(value), modelShare(m, l, uid, r), `${at}: share of uid ${uid}`);
      }
    }
    t.is(ledger.shareOf(ledger.owner), undefined, `${where}, ledger ${l}: the owner never has a share`);
    t.is(ledger.sharerCount, modelSharersAny(m, l), `${where}, ledger ${l}: sharerCount`);
    const listed = [...ledger.shares()].map(([uid]) => uid).sort();
    const expected = UIDS.filter((uid) => [0, 1, 2].some((r) => modelShare(m, l, uid, r) > 0n));
    t.deepEqual(listed, expected, `${where}, ledger ${l}: shares() lists exactly the nonzero shares`);
  }
}

/* ---- operations ---- */

/** Mostly small amounts so limits are reached after a few sends; sometimes huge ones and 2^53 edges. */
const amount = fc.oneof(
  { weight: 10, arbitrary: fc.nat(8) },
  { weight: 3, arbitrary: fc.nat(40) },
  { weight: 4, arbitrary: fc.constant(0) },
  {
    weight: 1,
    arbitrary: fc.oneof(fc.maxSafeNat(), fc.integer({ min: 2 ** 51, max: MAX_SAFE }),
      fc.constantFrom(MAX_SAFE, 2 ** 53, 18446744073709551615)),
  },
);
/** Often one resource alone, so a uid can hold a share of bytes but none of handles. */
const amounts: fc.Arbitrary<Triple> = fc.oneof(
  fc.tuple(amount, amount, amount),
  fc.tuple(fc.nat(RESOURCE_COUNT - 1), amount).map(([r, a]): Triple => [r === 0 ? a : 0, r === 1 ? a : 0, r === 2 ? a : 0]),
);
const limit = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 16, max: 256 }) },
  { weight: 1, arbitrary: fc.nat(16) },
  { weight: 1, arbitrary: fc.constant(MAX_SAFE) },
  { weight: 1, arbitrary: fc.integer({ min: 2 ** 51, max: MAX_SAFE }) },
);
const ledgerSpec = fc.record({
  owner: fc.constantFrom(...UIDS),
  rule: fc.constantFrom<QuotaRule>('half', 'polynomial'),
  limits: fc.record({ messages: limit, handles: limit, bytes: limit }),
});
const ledgerIndex = fc.nat(LEDGER_COUNT - 1);
const uid = fc.constantFrom(...UIDS);
const pick = fc.nat();

/** Weighted toward charging, so shares pile up and several uids share one ledger. */
const op = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('charge' as const), ledger: ledgerIndex, uid, amounts }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('multicast' as const),
      uid,
      parts: fc.array(fc.record({ ledger: ledgerIndex, amounts }), { minLength: 1, maxLength: MAX_MULTICAST_PARTS }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('commit' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('discharge' as const), pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), pick, half: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('chargeCommitted' as const), ledger: ledgerIndex, uid, amounts }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('overdraw' as const), pick, ledger: ledgerIndex, uid }) },
);

const toBig = (a: Triple): bigint[] => a.map(BigInt);
const toNum = (a: bigint[]): Triple => [Number(a[0]), Number(a[1]), Number(a[2])];

testProp(
  'Ledger + ChargeSet match the reference model, and undoing everything leaves every ledger at max',
  [fc.array(ledgerSpec, { minLength: LEDGER_COUNT, maxLength: LEDGER_COUNT }), fc.array(op, { maxLength: MAX_OPS, size: 'max' })],
  (t, specs, ops) => {
    const ledgers = specs.map((s) => new Ledger(s.owner, s.limits, s.rule));
    const m: Model = {
      owners: specs.map((s) => s.owner),
      rules: specs.map((s) => s.rule),
      max: specs.map((s) => [s.limits.messages, s.limits.handles, s.limits.bytes].map(BigInt)),
      remaining: specs.map((s) => [s.limits.messages, s.limits.handles, s.limits.bytes].map(BigInt)),
      inflight: [],
      committed: [],
    };
    const set = new ChargeSet();
    let refusalObject: ChargeRefusal | null = null;

    ops.forEach((o, i) => {
      const where = `op ${i} ${o.kind}`;
      switch (o.kind) {
        case 'charge': {
          const expected = modelCheck(m, o.ledger, o.uid, toBig(o.amounts));
          const got = ledgers[o.ledger]!.check(o.uid, ...o.amounts);
          t.is(got, expected, `${where}: check`);
          if (got === ALLOWED) {
            ledgers[o.ledger]!.charge(o.uid, ...o.amounts);
            modelTake(m, o.ledger, toBig(o.amounts));
            m.inflight.push({ ledger: o.ledger, uid: o.uid, amounts: toBig(o.amounts) });
          }
          break;
        }
        case 'multicast': {
          // the model sums per ledger in first-appearance order, then checks each sum
          const order: number[] = [];
          const sums = new Map<number, bigint[]>();
          for (const p of o.parts) {
            const sum = sums.get(p.ledger);
            if (sum === undefined) { order.push(p.ledger); sums.set(p.ledger, toBig(p.amounts)); }
            else for (let r = 0; r < RESOURCE_COUNT; r++) sum[r]! += BigInt(p.amounts[r]);
          }
          let expected: { ledger: number; resource: number } | null = null;
          for (const l of order) {
            const resource = modelCheck(m, l, o.uid, sums.get(l)!);
            if (resource !== -1) { expected = { ledger: l, resource }; break; }
          }

          set.reset(o.uid);
          for (const p of o.parts) set.add(ledgers[p.ledger]!, ...p.amounts);
          const refusal = set.check();
          if (expected === null) {
            t.is(refusal, null, `${where}: expected allowed`);
            set.apply();
            for (const l of order) {
              modelTake(m, l, sums.get(l)!);
              m.inflight.push({ ledger: l, uid: o.uid, amounts: sums.get(l)! });
            }
          } else {
            t.not(refusal, null, `${where}: expected refused`);
            t.is(refusal!.ledger, ledgers[expected.ledger], `${where}: refused ledger`);
            t.is(refusal!.resource, expected.resource, `${where}: refused resource`);
            if (refusalObject !== null) t.is(refusal, refusalObject, `${where}: refusal object reused`);
            refusalObject = refusal;
            t.throws(() => set.apply(), undefined, `${where}: apply after a refusal`);
          }
          break;
        }
        case 'commit':
        case 'discharge': {
          if (m.inflight.length === 0) break;
          const [c] = m.inflight.splice(o.pick % m.inflight.length, 1) as [Charge];
          if (o.kind === 'commit') {
            ledgers[c.ledger]!.commit(c.uid, ...toNum(c.amounts));
            m.committed.push(c);
          } else {
            ledgers[c.ledger]!.discharge(c.uid, ...toNum(c.amounts));
            modelGive(m, c.ledger, c.amounts);
          }
          break;
        }
        case 'release': {
          if (m.committed.length === 0) break;
          const index = o.pick % m.committed.length;
          const c = m.committed[index]!;
          const part = o.half ? c.amounts.map((a) => a / 2n) : c.amounts;
          ledgers[c.ledger]!.release(...toNum(part));
          modelGive(m, c.ledger, part);
          if (o.half) c.amounts = c.amounts.map((a, r) => a - part[r]!);
          else m.committed.splice(index, 1);
          break;
        }
        case 'chargeCommitted': {
          const expected = modelCheck(m, o.ledger, o.uid, toBig(o.amounts));
          const got = ledgers[o.ledger]!.check(o.uid, ...o.amounts);
          t.is(got, expected, `${where}: check`);
          if (got === ALLOWED) {
            ledgers[o.ledger]!.chargeCommitted(o.uid, ...o.amounts);
            modelTake(m, o.ledger, toBig(o.amounts));
            m.committed.push({ ledger: o.ledger, uid: o.uid, amounts: toBig(o.amounts) });
          }
          break;
        }
        case 'overdraw': {
          // taking back one more than is there must throw and change nothing
          const ledger = ledgers[o.ledger]!;
          const r = o.pick % RESOURCE_COUNT;
          const held = (uid: number): bigint => {
            let sum = 0n;
            for (const c of m.inflight) if (c.ledger === o.ledger && c.uid === uid) sum += c.amounts[r]!;
            return sum;
          };
          const over = (base: bigint): Triple => {
            const a: Triple = [0, 0, 0];
            a[r] = Number(base) + 1;
            return a;
          };
          t.throws(() => ledger.commit(o.uid, ...over(held(o.uid))), undefined, `${where}: commit beyond in flight`);
          t.throws(() => ledger.discharge(o.uid, ...over(held(o.uid))), undefined, `${where}: discharge beyond in flight`);
          let committed = 0n;
          for (const c of m.committed) if (c.ledger === o.ledger) committed += c.amounts[r]!;
          t.throws(() => ledger.release(...over(committed)), undefined, `${where}: release beyond received`);
          t.throws(() => ledger.charge(o.uid, ...over(m.remaining[o.ledger]![r]!)), undefined, `${where}: charge beyond remaining`);
          break;
        }
      }
      assertSame(t, m, ledgers, where);
    });

    // undo everything: every in-flight charge dropped, every received one released
    for (const c of m.inflight) {
      ledgers[c.ledger]!.discharge(c.uid, ...toNum(c.amounts));
      modelGive(m, c.ledger, c.amounts);
    }
    m.inflight = [];
    for (const c of m.committed) {
      ledgers[c.ledger]!.release(...toNum(c.amounts));
      modelGive(m, c.ledger, c.amounts);
    }
    m.committed = [];
    assertSame(t, m, ledgers, 'after undoing everything');
    for (const ledger of ledgers) {
      t.deepEqual([...ledger.remaining], [...ledger.max], 'back at max');
      t.deepEqual([...ledger.inflight], [0, 0, 0], 'nothing in flight');
      t.is([...ledger.shares()].length, 0, 'no shares');
      t.is(ledger.sharerCount, 0, 'no sharers');
      for (let r = 0; r < RESOURCE_COUNT; r++) t.is(ledger.sharers(r), 0, 'no sharers of a resource');
      t.true(ledger.atRest());
    }
  },
  { numRuns: RUNS },
);

/* ---- targeted cases ---- */

const LIMITS: Limits = { messages: 1024, handles: 1024, bytes: 1024 };
const OWNER = 100;

test('a multicast hitting one ledger twice is judged on the sum', (t) => {
  const user = new Ledger(OWNER, LIMITS, 'half');
  const set = new ChargeSet();
  set.reset(1);
  set.add(user, 300, 0, 0);
  t.is(set.check(), null, 'one part alone fits under half');
  set.add(user, 300, 0, 0);
  const refusal = set.check();
  t.is(refusal?.ledger, user);
  t.is(refusal?.resource, MESSAGES);
  t.deepEqual([...user.remaining], [1024, 1024, 1024], 'nothing charged');
});

test('a refused multicast charges no ledger, not even those checked before the refusal', (t) => {
  const a = new Ledger(OWNER, LIMITS, 'half');
  const b = new Ledger(OWNER + 1, { messages: 1024, handles: 1024, bytes: 10 }, 'half');
  const set = new ChargeSet();
  set.reset(1);
  set.add(a, 1, 1, 1);
  set.add(b, 1, 0, 6);
  const refusal = set.check();
  t.is(refusal?.ledger, b);
  t.is(refusal?.resource, BYTES);
  t.throws(() => set.apply());
  t.true(a.atRest());
  t.true(b.atRest());
});

test('polynomial sharers are counted per resource', (t) => {
  const user = new Ledger(OWNER, LIMITS, 'polynomial');
  user.charge(1, 0, 0, 100); // uid 1 holds bytes only
  t.is(user.sharers(BYTES), 1);
  t.is(user.sharers(HANDLES), 0);
  t.is(user.sharerCount, 1);
  // uid 2 alone on handles: n = 1, so up to half of 1024
  t.is(user.check(2, 0, 512, 0), ALLOWED);
  t.is(user.check(2, 0, 513, 0), HANDLES);
});

test('invariant violations throw and change nothing', (t) => {
  const user = new Ledger(OWNER, LIMITS, 'half');
  user.charge(1, 10, 2, 100);
  user.charge(OWNER, 5, 0, 0);
  const before = () => [[...user.remaining], [...user.inflight], [...user.shareOf(1)!]];
  const snapshot = before();
  t.throws(() => user.commit(1, 11, 0, 0), { message: /exceeds/ });
  t.throws(() => user.commit(1, 1, 3, 0), { message: /exceeds/ }, 'no partial commit of messages before handles fail');
  t.throws(() => user.discharge(2, 1, 0, 0), { message: /nothing in flight/ });
  t.throws(() => user.commit(OWNER, 6, 0, 0), { message: /exceeds/ }, 'the owner cannot commit more than it sent itself');
  t.throws(() => user.release(1, 0, 0), { message: /exceeds/ }, 'nothing has been received yet');
  t.throws(() => user.charge(1, 0, 0, 2000), { message: /exceeds/ });
  t.throws(() => user.chargeCommitted(1, 0, 0, 2000), { message: /exceeds/ });
  for (const bad of [-1, 0.5, NaN, Infinity, 2 ** 53]) {
    t.throws(() => user.charge(1, bad, 0, 0), { instanceOf: RangeError }, `charge(${bad})`);
    t.throws(() => user.commit(1, 0, bad, 0), { instanceOf: RangeError }, `commit(${bad})`);
    t.throws(() => user.release(0, 0, bad), { instanceOf: RangeError }, `release(${bad})`);
  }
  t.deepEqual(before(), snapshot);
  user.commit(1, 10, 2, 100);
  user.release(10, 2, 100);
  t.throws(() => user.release(1, 0, 0), { message: /exceeds/ }, 'released twice');
  user.discharge(OWNER, 5, 0, 0);
  t.true(user.atRest());
});

test('check() refuses absurd amounts and never throws', (t) => {
  const user = new Ledger(OWNER, LIMITS, 'polynomial');
  for (const sender of [1, OWNER]) {
    t.is(user.check(sender, 18446744073709551615, 0, 0), MESSAGES);
    t.is(user.check(sender, 0, -1, 0), HANDLES);
    t.is(user.check(sender, 0, 0, NaN), BYTES);
    t.is(user.check(sender, 0, 0, 0), ALLOWED);
  }
});

test('ChargeSet rejects negative or fractional amounts, lets huge ones through to be refused', (t) => {
  const user = new Ledger(OWNER, LIMITS, 'half');
  const set = new ChargeSet();
  set.reset(1);
  t.throws(() => set.add(user, -1, 0, 0), { instanceOf: RangeError });
  t.throws(() => set.add(user, 0, 0.5, 0), { instanceOf: RangeError });
  t.throws(() => set.add(user, 0, 0, NaN), { instanceOf: RangeError });
  set.add(user, MAX_SAFE, 0, 0);
  set.add(user, MAX_SAFE, 0, 0);
  t.is(set.check()?.resource, MESSAGES);
});

test('two ChargeSets built at once over one ledger are detected', (t) => {
  const user = new Ledger(OWNER, LIMITS, 'half');
  const a = new ChargeSet();
  const b = new ChargeSet();
  a.reset(1);
  a.add(user, 1, 0, 0);
  b.reset(2);
  b.add(user, 1, 0, 0);
  a.add(user, 1, 0, 0);
  t.throws(() => a.check(), { message: /another ChargeSet/ });
  t.throws(() => b.check(), { message: /another ChargeSet/ });
});

test('a ChargeSet grows past its initial capacity and is reusable', (t) => {
  const many = Array.from({ length: 100 }, (_, i) => new Ledger(i + 1000, LIMITS, 'half'));
  const set = new ChargeSet();
  for (let round = 0; round < 3; round++) {
    set.reset(1);
    for (const l of many) set.add(l, 1, 0, 8);
    for (const l of many) set.add(l, 1, 0, 8);
    t.is(set.check(), null);
    set.apply();
    t.throws(() => set.apply(), undefined, 'applied once only');
  }
  for (const l of many) {
    t.deepEqual([...l.shareOf(1)!], [6, 0, 48]);
    l.discharge(1, 6, 0, 48);
    t.true(l.atRest());
  }
});

test('constructor rejects limits that are not safe counts and unknown rules', (t) => {
  t.throws(() => new Ledger(OWNER, { ...LIMITS, bytes: -1 }, 'half'), { instanceOf: RangeError });
  t.throws(() => new Ledger(OWNER, { ...LIMITS, handles: 2 ** 53 }, 'half'), { instanceOf: RangeError });
  t.throws(() => new Ledger(OWNER, LIMITS, 'fair' as QuotaRule), { instanceOf: RangeError });
});

testProp(
  'headroom() is the largest amount check() allows, and a run charged as one passes exactly when each send would',
  [
    fc.constantFrom<QuotaRule>('half', 'polynomial'),
    fc.integer({ min: 0, max: 1 << 20 }),
    fc.array(fc.tuple(fc.constantFrom(1, 2, 3), fc.integer({ min: 1, max: 5000 })), { maxLength: 6 }),
    fc.constantFrom(0, 1, 2),
    fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 12 }),
  ],
  (t, rule, limit, earlier, sender, run) => {
    const make = (): Ledger => {
      const l = new Ledger(0, { messages: limit, handles: limit, bytes: limit }, rule);
      for (const [uid, b] of earlier) if (l.check(uid, 0, 0, b) === ALLOWED) l.charge(uid, 0, 0, b);
      return l;
    };
    const ledger = make();
    const room = ledger.headroom(sender, BYTES);
    t.not(ledger.check(sender, 0, 0, room), BYTES);
    t.is(ledger.check(sender, 0, 0, room + 1), BYTES);
    // One by one, each checked before it is charged, against the sum checked once.
    const oneByOne = make();
    let passed = 0;
    for (const b of run) {
      if (oneByOne.check(sender, 0, 0, b) !== ALLOWED) break;
      oneByOne.charge(sender, 0, 0, b);
      passed++;
    }
    const sum = run.reduce((a, b) => a + b, 0);
    t.is(passed === run.length, sum <= room);
  },
  { numRuns: RUNS },
);
