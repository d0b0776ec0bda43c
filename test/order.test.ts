/*
 * Global order (spec/semantics.md section 4), with peers in real workers racing each
 * other: one sender's order, the three-peer causality case, concurrent multicasts seen
 * in one order by all receivers, messages before a node's destruction arriving before
 * its node-destroy, and seq numbers increasing at every receiver. The racy cases are
 * repeated many times; senders and receivers act inside their workers
 * (test/fixtures/order-peer.ts) so that no test-thread round trip serialises the race.
 *
 * Serial: every test keeps several workers busy, and the machine has two cores.
 */

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import type { Bus } from '../src/index.js';
import { TestBus, within } from './helpers/remote-peer.js';
import { Remote, nodeOf } from './fixtures/api-remote.js';
import type { BatchResult, Compact } from './fixtures/order-peer.js';

const test = anyTest.serial as TestFn;

const CALL_MS = 20_000;
const TYPE = 0, DEST = 1, TEXT = 2, SEQ = 3, CONT = 4;

async function setup(t: ExecutionContext, n: number): Promise<{ bus: Bus; p: Remote[] }> {
  const tb = await TestBus.start(t);
  const p = await Promise.all(Array.from({ length: n }, (_, i) => Remote.spawn(t, tb.bus, 2001 + i, 'order-peer')));
  return { bus: tb.bus, p };
}

function collect(p: Remote, count: number): Promise<Compact[]> {
  return within(CALL_MS, p.call<Compact[]>('collect', count, CALL_MS - 2000), `collect ${count}`);
}

function sendSeq(p: Remote, dests: Array<number | number[]>, count: number, prefix: string): Promise<BatchResult> {
  return within(CALL_MS, p.call<BatchResult>('sendSeq', dests, count, prefix), `sendSeq ${count}`);
}

/**
 * Seq numbers at one receiver: strictly increasing from one transaction to the next;
 * equal only within one transaction, i.e. right after a message marked `continue`.
 */
function assertSeqOrder(t: ExecutionContext, msgs: Compact[], what: string): void {
  let bad = -1;
  for (let i = 1; i < msgs.length && bad < 0; i++) {
    const prev = msgs[i - 1], cur = msgs[i];
    const ok = prev[CONT] ? cur[SEQ] === prev[SEQ] : cur[SEQ] > prev[SEQ];
    if (!ok) bad = i;
  }
  t.is(bad, -1, bad < 0 ? what
    : `${what}: at ${bad}: ${JSON.stringify(msgs[bad - 1])} then ${JSON.stringify(msgs[bad])}`);
}

/** Texts in arrival order. */
const texts = (msgs: Compact[]) => msgs.map((m) => m[TEXT]);
const range = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i));

// ---- one sender -----------------------------------------------------------------------------

test('one sender\'s messages arrive in the order sent (5000 back-to-back sends)', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [, aB] = await nodeOf(bus, b, a);
  const N = 5000;
  const [got, sent] = await Promise.all([collect(b, N), sendSeq(a, [aB], N, 'm')]);
  t.deepEqual(sent, { ok: N, failed: [] });
  t.deepEqual(texts(got), range(N, (i) => `m${i}`));
  t.true(got.every((m) => m[TYPE] === 'data' && !m[CONT]));
  assertSeqOrder(t, got, 'receiver');
});

test('one sender\'s messages to three receivers arrive in order at each, with seq following the send order', async (t) => {
  const { bus, p: [a, b, c, d] } = await setup(t, 4);
  const rs = [b, c, d];
  const hs: number[] = [];
  for (const r of rs) hs.push((await nodeOf(bus, r, a))[1]);
  const N = 6000;
  const [sent, ...got] = await Promise.all([sendSeq(a, hs, N, 'm'), ...rs.map((r) => collect(r, N / 3))]);
  t.deepEqual(sent, { ok: N, failed: [] });
  const seqOf = new Array<number>(N);
  for (const [k, msgs] of got.entries()) {
    t.deepEqual(texts(msgs), range(N / 3, (j) => `m${3 * j + k}`), `receiver ${k}`);
    assertSeqOrder(t, msgs, `receiver ${k}`);
    for (const m of msgs) seqOf[Number(m[TEXT].slice(1))] = m[SEQ];
  }
  // Across receivers: message i was committed before message i+1.
  let bad = -1;
  for (let i = 1; i < N && bad < 0; i++) if (!(seqOf[i] > seqOf[i - 1])) bad = i;
  t.is(bad, -1, bad < 0 ? '' : `m${bad - 1} has seq ${seqOf[bad - 1]}, m${bad} has seq ${seqOf[bad]}`);
});

test('a multicast stream from one sender to three receivers keeps its order at each, with one seq per message', async (t) => {
  const { bus, p: [a, b, c, d] } = await setup(t, 4);
  const rs = [b, c, d];
  const hs: number[] = [];
  for (const r of rs) hs.push((await nodeOf(bus, r, a))[1]);
  const N = 3000;
  const [sent, ...got] = await Promise.all([sendSeq(a, [hs], N, 'm'), ...rs.map((r) => collect(r, N))]);
  t.deepEqual(sent, { ok: N, failed: [] });
  for (const [k, msgs] of got.entries()) {
    t.deepEqual(texts(msgs), range(N, (i) => `m${i}`), `receiver ${k}`);
    assertSeqOrder(t, msgs, `receiver ${k}`);
  }
  t.deepEqual(got[1].map((m) => m[SEQ]), got[0].map((m) => m[SEQ]), 'same seq for one multicast everywhere');
  t.deepEqual(got[2].map((m) => m[SEQ]), got[0].map((m) => m[SEQ]), 'same seq for one multicast everywhere');
});

// ---- causality -------------------------------------------------------------------------------

test('P1 multicasts m1 to P2 and P3, P2 forwards on receipt: P3 gets m1 before m2 (1000 times)', async (t) => {
  const { bus, p: [p1, p2, p3] } = await setup(t, 3);
  const [, p1To2] = await nodeOf(bus, p2, p1);
  const [n3, p1To3, p2To3] = await nodeOf(bus, p3, p1, p2);
  const N = 200;
  for (let round = 0; round < 5; round++) {
    const prefix = `r${round}m`;
    // Odd rounds: P3 reads only after everything is queued; even rounds: while it happens.
    const p3Reads = round % 2 === 0 ? collect(p3, 2 * N) : null;
    const relay = within(CALL_MS, p2.call('relay', N, p2To3, 'fwd:'), 'relay');
    const sent = await sendSeq(p1, [[p1To2, p1To3]], N, prefix);
    t.deepEqual(sent, { ok: N, failed: [] });
    const relayed = await relay;
    t.is(relayed.failed, null);
    t.deepEqual(relayed.relayed, range(N, (i) => `${prefix}${i}`), 'P2 sees P1\'s order');
    const got = p3Reads !== null ? await p3Reads : await collect(p3, 2 * N);
    const at = new Map(got.map((m, i) => [m[TEXT], i]));
    let bad = -1;
    for (let i = 0; i < N && bad < 0; i++) {
      const m1 = at.get(`${prefix}${i}`), m2 = at.get(`fwd:${prefix}${i}`);
      if (m1 === undefined || m2 === undefined || !(m1 < m2) || !(got[m1][SEQ] < got[m2][SEQ])) bad = i;
    }
    t.is(bad, -1, bad < 0 ? '' : `round ${round}: ${prefix}${bad} at ${at.get(`${prefix}${bad}`)}, its forward at ${at.get(`fwd:${prefix}${bad}`)}`);
    t.deepEqual(got.filter((m) => m[TEXT].startsWith(prefix)).map((m) => m[DEST]), Array(N).fill(n3));
    assertSeqOrder(t, got, `P3, round ${round}`);
    t.deepEqual(texts(got.filter((m) => m[TEXT].startsWith(prefix))), range(N, (i) => `${prefix}${i}`), 'P1\'s order at P3');
  }
});

// ---- concurrent multicasts -------------------------------------------------------------------

test('two concurrent multicast streams from two senders arrive in the same order at both receivers (150 rounds)', async (t) => {
  const { bus, p: [s1, s2, r1, r2] } = await setup(t, 4);
  const [, s1R1, s2R1] = await nodeOf(bus, r1, s1, s2);
  const [, s1R2, s2R2] = await nodeOf(bus, r2, s1, s2);
  const rounds = 150, perRound = 4, total = 2 * rounds * perRound;
  const sab = new SharedArrayBuffer(4);
  const [x, y, got1, got2] = await Promise.all([
    within(CALL_MS, s1.call<BatchResult>('burst', sab, 2, rounds, perRound, [s1R1, s1R2], 'A'), 'burst A'),
    within(CALL_MS, s2.call<BatchResult>('burst', sab, 2, rounds, perRound, [s2R2, s2R1], 'B'), 'burst B'),
    collect(r1, total),
    collect(r2, total),
  ]);
  t.deepEqual(x, { ok: rounds * perRound, failed: [] });
  t.deepEqual(y, { ok: rounds * perRound, failed: [] });
  const order1 = texts(got1), order2 = texts(got2);
  let bad = -1;
  for (let i = 0; i < total && bad < 0; i++) if (order1[i] !== order2[i]) bad = i;
  t.is(bad, -1, bad < 0 ? '' : `first difference at ${bad}: ${order1[bad]} vs ${order2[bad]}`);
  t.deepEqual(got1.map((m) => m[SEQ]), got2.map((m) => m[SEQ]), 'same seq for each multicast at both');
  assertSeqOrder(t, got1, 'r1');
  assertSeqOrder(t, got2, 'r2');
  for (const tag of ['A', 'B']) {
    const mine = order1.filter((s) => s.startsWith(`${tag}:`));
    const expected: string[] = [];
    for (let r = 1; r <= rounds; r++) for (let k = 0; k < perRound; k++) expected.push(`${tag}:${r}:${k}`);
    t.deepEqual(mine, expected, `sender ${tag}'s own order`);
  }
  let switches = 0;
  for (let i = 1; i < total; i++) if (order1[i][0] !== order1[i - 1][0]) switches++;
  t.log(`sender interleavings seen: ${switches}`);
});

// ---- messages before destruction -------------------------------------------------------------

test('a message whose send resolved before the owner destroyed the node arrives before node-destroy (100 times)', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const iterations = 100;
  const sab = new SharedArrayBuffer(4 * iterations);
  for (let i = 0; i < iterations; i++) {
    const [n, h] = await nodeOf(bus, a, b);
    await a.call('destroyOnSignal', sab, i, [n]);
    const sent = await within(CALL_MS, b.call<BatchResult>('sendThenSignal', sab, i, h, 1, 1, `it${i}:`), 'send');
    t.deepEqual(sent, { ok: 1, failed: [] }, `iteration ${i}`);
    await within(CALL_MS, a.call('armedDone'), 'destroy');
    const atA = await within(CALL_MS, a.call<Compact[]>('collectUntilDestroy', n), 'owner');
    t.deepEqual(atA.map((m) => [m[TYPE], m[DEST], m[TEXT]]), [['data', n, `it${i}:0`], ['node-destroy', n, '']], `iteration ${i}`);
    t.true(atA[1][SEQ] > atA[0][SEQ], `iteration ${i}: seq`);
    const atB = await within(CALL_MS, b.call<Compact[]>('collectUntilDestroy', h), 'holder');
    t.deepEqual(atB.map((m) => [m[TYPE], m[DEST]]), [['node-destroy', h]], `iteration ${i}`);
    t.is(atB[0][SEQ], atA[1][SEQ], 'one destruction, one seq');
  }
  t.is(await a.tryRecv(), 'undefined');
});

test('many messages queued before a node\'s destruction all arrive, in order, before node-destroy', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const iterations = 10, N = 500;
  const sab = new SharedArrayBuffer(4 * iterations);
  for (let i = 0; i < iterations; i++) {
    const [n, h] = await nodeOf(bus, a, b);
    await a.call('destroyOnSignal', sab, i, [n]);
    const sent = await within(CALL_MS, b.call<BatchResult>('sendThenSignal', sab, i, h, N, N, `it${i}:`), 'send');
    t.deepEqual(sent, { ok: N, failed: [] });
    await within(CALL_MS, a.call('armedDone'), 'destroy');
    const atA = await within(CALL_MS, a.call<Compact[]>('collectUntilDestroy', n), 'owner');
    t.deepEqual(texts(atA), [...range(N, (k) => `it${i}:${k}`), ''], `iteration ${i}`);
    t.is(atA[N][TYPE], 'node-destroy');
    assertSeqOrder(t, atA, `iteration ${i}`);
  }
});

test('sends racing a node\'s destruction: the delivered ones are a prefix, all before node-destroy; the rest fail with ESHUTDOWN (20 times)', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const iterations = 20, N = 1000;
  const sab = new SharedArrayBuffer(4 * iterations);
  let mixed = 0;
  for (let i = 0; i < iterations; i++) {
    const [n, h] = await nodeOf(bus, a, b);
    await a.call('destroyOnSignal', sab, i, [n]);
    // The owner destroys as soon as the first send has resolved; the others race it.
    const sent = await within(CALL_MS, b.call<BatchResult>('sendThenSignal', sab, i, h, N, 1, `it${i}:`), 'send');
    await within(CALL_MS, a.call('armedDone'), 'destroy');
    const k = sent.ok;
    t.true(k >= 1, `iteration ${i}: the first send resolved before the destroy`);
    t.deepEqual(sent.failed, Array.from({ length: N - k }, (_, j) => [k + j, 'ESHUTDOWN']), `iteration ${i}: failures are the tail, ESHUTDOWN`);
    if (k < N) mixed++;
    const atA = await within(CALL_MS, a.call<Compact[]>('collectUntilDestroy', n), 'owner');
    t.deepEqual(texts(atA), [...range(k, (j) => `it${i}:${j}`), ''], `iteration ${i}: exactly the accepted sends, then node-destroy`);
    assertSeqOrder(t, atA, `iteration ${i}`);
  }
  t.log(`iterations where the destruction cut the stream: ${mixed} of ${iterations}`);
  t.is(await a.tryRecv(), 'undefined');
});

// ---- seq ------------------------------------------------------------------------------------

test('seq numbers increase at every receiver across concurrent senders, multicasts and notifications', async (t) => {
  const { bus, p: [r1, r2, s1, s2, s3] } = await setup(t, 5);
  const [, s1A, s2A, s3A] = await nodeOf(bus, r1, s1, s2, s3);
  const [, s1B, s2B] = await nodeOf(bus, r1, s1, s2, s3); // s3 holds B too, and never sends to it
  const [, s1C, s2C, s3C] = await nodeOf(bus, r2, s1, s2, s3);
  const N = 600;
  // Meanwhile r1 gets node-release and node-destroy notifications of its own.
  const churn = async () => {
    let notes = 0;
    for (let i = 0; i < 20; i++) {
      const [, h] = await nodeOf(bus, r1, s3);
      await s3.releaseHandle(h); // node-release to r1
      const doomed = await r1.createNode();
      await r1.destroyNodes([doomed]); // node-destroy to r1
      notes += 2;
    }
    return notes;
  };
  const [x, y, z, notes] = await Promise.all([
    sendSeq(s1, [s1A, [s1A, s1B], s1C, [s1B, s1C]], N, 'x'),
    sendSeq(s2, [[s2A, s2B, s2C], s2B], N, 'y'),
    sendSeq(s3, [s3C, s3A], N, 'z'),
    churn(),
  ]);
  for (const r of [x, y, z]) t.deepEqual(r, { ok: N, failed: [] });
  // r1: x hits A or B or both (A,B: 2 messages), y hits A+B or B, z hits A half the time.
  const toR1 = (N / 4) * (1 + 2 + 0 + 1) + (N / 2) * (2 + 1) + N / 2;
  const toR2 = (N / 4) * 2 + N / 2 + N / 2;
  const [got1, got2] = await Promise.all([collect(r1, toR1 + notes), collect(r2, toR2)]);
  assertSeqOrder(t, got1, 'r1');
  assertSeqOrder(t, got2, 'r2');
  t.is(got1.filter((m) => m[TYPE] !== 'data').length, notes);
  // Each sender's own order survives at each receiver.
  for (const [got, name] of [[got1, 'r1'], [got2, 'r2']] as const) {
    for (const tag of ['x', 'y', 'z']) {
      const idx = got.filter((m) => m[TEXT].startsWith(tag)).map((m) => Number(m[TEXT].slice(1)));
      const dedup = idx.filter((v, i) => i === 0 || v !== idx[i - 1]); // a multicast to A and B arrives twice
      t.true(dedup.every((v, i) => i === 0 || v > dedup[i - 1]), `${name}: ${tag}'s order`);
    }
  }
  for (const p of [r1, r2]) t.is(await p.tryRecv(), 'undefined');
});
