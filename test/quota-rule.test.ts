/*
 * The quota rule against the step-by-step vectors (semantics.md 5.4). The vectors are a
 * verbatim copy of the project spec's quota-vectors.json, kept in test/fixtures/ so that a
 * clone of this repository holds everything its tests read. Every
 * case runs twice: on the pure rule with a minimal state machine kept here, and through a
 * Ledger on each resource in turn. Then the rule is compared with exact BigInt arithmetic
 * on arbitrary, including absurd, inputs.
 */

import { readFileSync } from 'node:fs';
import test from 'ava';
import { testProp, fc } from '@fast-check/ava';
import { quotaAllows, selfAllows, type QuotaRule } from '../src/coordinator/quota.js';
import { ALLOWED, Ledger, RESOURCE_COUNT, RESOURCE_NAMES } from '../src/coordinator/ledger.js';

// Tests run from dist/test/; the JSON is not compiled, so it is read from the source tree.
const VECTORS_URL = new URL('../../test/fixtures/quota-vectors.json', import.meta.url);

type Actor = number | 'self';
type Expect = 'ok' | 'EDQUOT';
type Step =
  | { op: 'charge'; actor: Actor; amount: number; expect: Expect }
  | { op: 'commit' | 'discharge'; actor: Actor; amount: number }
  | { op: 'release'; amount: number };
interface VectorCase {
  name: string;
  rule: QuotaRule;
  max: number;
  steps: Step[];
  final: { remaining: number; shares: Record<string, number> };
}

const vectors = JSON.parse(readFileSync(VECTORS_URL, 'utf8')) as { cases: VectorCase[] };

/** A uid that no vector uses as an actor, to own the Ledger that 'self' stands for. */
const OWNER_UID = 4_000_000_000;

test('the vector file has cases, and every charge step has an expectation', (t) => {
  t.true(vectors.cases.length > 0);
  for (const c of vectors.cases) {
    t.true(c.rule === 'half' || c.rule === 'polynomial', c.name);
    for (const step of c.steps) {
      if (step.op === 'charge') t.true(step.expect === 'ok' || step.expect === 'EDQUOT', c.name);
      else t.true(step.op === 'commit' || step.op === 'discharge' || step.op === 'release', `${c.name}: ${step.op}`);
    }
  }
});

for (const c of vectors.cases) {
  test(`rule: ${c.name}`, (t) => {
    let remaining = c.max;
    const shares = new Map<number, number>();
    const sharersCountingNewcomer = (share: number) =>
      [...shares.values()].filter((s) => s > 0).length + (share === 0 ? 1 : 0);

    c.steps.forEach((step, i) => {
      const where = `${c.name}, step ${i}: ${JSON.stringify(step)}`;
      switch (step.op) {
        case 'charge': {
          let allowed: boolean;
          const share = step.actor === 'self' ? 0 : shares.get(step.actor) ?? 0;
          if (step.actor === 'self') {
            allowed = selfAllows(remaining, step.amount);
          } else {
            allowed = quotaAllows(c.rule, remaining, share, step.amount, sharersCountingNewcomer(share));
          }
          t.is(allowed ? 'ok' : 'EDQUOT', step.expect, where);
          if (allowed) {
            remaining -= step.amount;
            if (step.actor !== 'self') shares.set(step.actor, share + step.amount);
          }
          break;
        }
        case 'commit':
        case 'discharge': {
          if (step.actor === 'self') throw new Error(`${where}: a self share is not modelled`);
          const share = shares.get(step.actor) ?? 0;
          t.true(step.amount <= share, `${where}: vector takes back more than is in flight`);
          shares.set(step.actor, share - step.amount);
          if (step.op === 'discharge') remaining += step.amount;
          break;
        }
        case 'release':
          remaining += step.amount;
          t.true(remaining <= c.max, `${where}: vector releases more than its max`);
          break;
      }
    });

    t.is(remaining, c.final.remaining, `${c.name}: final remaining`);
    const nonzero = Object.fromEntries([...shares].filter(([, s]) => s > 0).map(([uid, s]) => [String(uid), s]));
    t.deepEqual(nonzero, c.final.shares, `${c.name}: final shares`);
  });

  test(`ledger, every resource: ${c.name}`, (t) => {
    for (let r = 0; r < RESOURCE_COUNT; r++) {
      const ledger = new Ledger(OWNER_UID, { messages: c.max, handles: c.max, bytes: c.max }, c.rule);
      const uid = (actor: Actor) => (actor === 'self' ? OWNER_UID : actor);
      const at = (amount: number): [number, number, number] =>
        [r === 0 ? amount : 0, r === 1 ? amount : 0, r === 2 ? amount : 0];

      c.steps.forEach((step, i) => {
        const where = `${c.name}, ${RESOURCE_NAMES[r]}, step ${i}: ${JSON.stringify(step)}`;
        switch (step.op) {
          case 'charge': {
            const refused = ledger.check(uid(step.actor), ...at(step.amount));
            t.true(refused === ALLOWED || refused === r, `${where}: refused on a resource it did not ask for`);
            t.is(refused === ALLOWED ? 'ok' : 'EDQUOT', step.expect, where);
            if (refused === ALLOWED) ledger.charge(uid(step.actor), ...at(step.amount));
            break;
          }
          case 'commit':
            ledger.commit(uid(step.actor), ...at(step.amount));
            break;
          case 'discharge':
            ledger.discharge(uid(step.actor), ...at(step.amount));
            break;
          case 'release':
            ledger.release(...at(step.amount));
            break;
        }
      });

      t.is(ledger.remaining[r], c.final.remaining, `${c.name}, ${RESOURCE_NAMES[r]}: final remaining`);
      const nonzero = Object.fromEntries([...ledger.shares()].map(([u, s]) => [String(u), s[r]]));
      t.deepEqual(nonzero, c.final.shares, `${c.name}, ${RESOURCE_NAMES[r]}: final shares`);
      t.is(ledger.sharers(r), Object.keys(c.final.shares).length);
      for (let other = 0; other < RESOURCE_COUNT; other++) {
        if (other !== r) t.is(ledger.remaining[other], c.max, `${RESOURCE_NAMES[other]} untouched`);
      }
    }
  });
}

/* ---- the rule against exact arithmetic ---- */

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO_POW_53 = 2 ** 53;

function isSafeCount(x: number): boolean {
  return Number.isSafeInteger(x) && x >= 0;
}

function exactAllows(rule: QuotaRule, remaining: number, share: number, amount: number, sharers: number): boolean {
  if (!isSafeCount(amount)) return false;
  if (amount === 0) return true;
  if (!isSafeCount(remaining) || !isSafeCount(share)) return false;
  if (rule === 'polynomial' && !isSafeCount(sharers)) return false; // 'half' ignores n
  const [R, s, c] = [BigInt(remaining), BigInt(share), BigInt(amount)];
  return rule === 'half' ? s + 2n * c <= R : (s + c) * (BigInt(sharers) + 1n) - s <= R;
}

/** Counts where doubles lose exactness, plus every kind of non-count. */
const anyNumber = fc.oneof(
  { weight: 4, arbitrary: fc.nat(2048) },
  { weight: 3, arbitrary: fc.maxSafeNat() },
  { weight: 3, arbitrary: fc.integer({ min: 2 ** 52 - 64, max: MAX_SAFE }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(TWO_POW_53, TWO_POW_53 + 2, 18446744073709551615, 4294967295, -1, 0.5, -0, NaN,
      Infinity, -Infinity, Number.MAX_VALUE),
  },
  { weight: 1, arbitrary: fc.double() },
);
const anySharers = fc.oneof(fc.nat(8), fc.maxSafeNat(), fc.constantFrom(-1, 1.5, NaN, Infinity, TWO_POW_53));
const anyRule = fc.constantFrom<QuotaRule>('half', 'polynomial');

testProp('quotaAllows equals exact BigInt arithmetic and never throws', [anyRule, anyNumber, anyNumber, anyNumber, anySharers],
  (t, rule, remaining, share, amount, sharers) => {
    t.is(quotaAllows(rule, remaining, share, amount, sharers), exactAllows(rule, remaining, share, amount, sharers));
  }, { numRuns: 20_000 });

testProp('selfAllows equals amount <= remaining on counts, refuses the rest', [anyNumber, anyNumber], (t, remaining, amount) => {
  const expected = !isSafeCount(amount) ? false : amount === 0 ? true : isSafeCount(remaining) && amount <= remaining;
  t.is(selfAllows(remaining, amount), expected);
}, { numRuns: 5_000 });

test('polynomial: a case where the plain double formula rounds to the wrong answer', (t) => {
  // (s + c)(n + 1) - s with s = 2^52 - 3, c = 2, n = 2 is exactly 2^53 > R = 2^53 - 1, but the
  // product 3 * (2^52 - 1) is odd and above 2^53, rounds down, and the naive result is R.
  const [R, s, c, n] = [MAX_SAFE, 2 ** 52 - 3, 2, 2];
  t.true((s + c) * (n + 1) - s <= R, 'the naive formula is fooled (else this example is moot)');
  t.false(quotaAllows('polynomial', R, s, c, n));
});

test('amount 0 is allowed even when the share already exceeds what the rule would grant', (t) => {
  t.true(quotaAllows('half', 256, 512, 0, 2));
  t.true(quotaAllows('polynomial', 0, 512, 0, 3));
  t.true(selfAllows(0, 0));
  t.false(quotaAllows('half', 256, 512, 1, 2));
});
