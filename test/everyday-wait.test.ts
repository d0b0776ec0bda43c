/*
 * Waiting sends (issue 11, point 5), in real workers: a send with { wait } that meets
 * EDQUOT goes through once the receiver drains, times out with ETIMEDOUT when it does
 * not, ends with an AbortError on its signal; waiting senders go through in the order
 * they started waiting; an all-or-nothing multicast waits until every destination
 * accepts. Every uid is back at its maximum afterwards.
 */

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { Bus } from '../src/index.js';
import { Everyday, backAtMax, within, type Outcome } from './fixtures/everyday-remote.js';

const test = anyTest.serial as TestFn;
const CALL_MS = 10_000;

interface Fill { sent: number; code: string | null }

/** Receiver `a` (uid 1001, at most 8 messages) and senders of uids 1002... holding a handle to its inbox. */
async function setup(t: ExecutionContext, senders: number) {
  const bus = await Bus.start({ users: { 1001: { messages: 8 } } });
  t.teardown(() => bus.close().catch(() => undefined));
  const a = await Everyday.spawn(t, bus, 1001, { nodes: ['inbox'] });
  const s: Array<{ peer: Everyday; to: number }> = [];
  for (let i = 0; i < senders; i++) {
    const p = await Everyday.spawn(t, bus, 1002 + i, { handles: { a: a.spawned.nodes.inbox }, name: `s${i}` });
    s.push({ peer: p, to: (await p.handles()).a });
  }
  return { bus, a, s };
}

async function fill(p: { peer: Everyday; to: number }): Promise<number> {
  const f = await within(CALL_MS, p.peer.call<Fill>('fill', p.to, 1000, 'fill'), 'fill');
  if (f.code !== 'EDQUOT') throw new Error(`fill ended with ${f.code}`);
  return f.sent;
}

const outcome = (p: Everyday, id: number, waitMs = 0) => within(waitMs + CALL_MS, p.call<Outcome>('outcome', id, waitMs), 'outcome');

/** Until the coordinator has queued `n` waiting sends of the peer named `name`. */
async function waiting(bus: Bus, name: string, n: number): Promise<void> {
  const deadline = Date.now() + CALL_MS;
  while ((await bus.stats()).byPeer.find((p) => p.name === name)?.waiting !== n) {
    if (Date.now() > deadline) throw new Error(`${name} is not waiting`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('a waiting send goes through once the receiver drains', async (t) => {
  const { bus, a, s: [b] } = await setup(t, 1);
  const filled = await fill(b);
  const id = await b.peer.call<number>('startWaitingSend', b.to, 'waited', true);
  await waiting(bus, 's0', 1);
  t.is((await outcome(b.peer, id)).state, 'pending', 'it waits while the receiver is full');
  t.is((await a.call<unknown[]>('recvMany', filled)).length, filled);
  t.is((await outcome(b.peer, id, CALL_MS)).state, 'resolved');
  t.like(await a.call('recvValue'), { value: 'waited' });
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});

test('a waiting send times out with ETIMEDOUT when the receiver does not drain, and aborts with an AbortError', async (t) => {
  const { bus, a, s: [b] } = await setup(t, 1);
  const filled = await fill(b);
  const timed = await b.peer.call<number>('startWaitingSend', b.to, 'never', 200);
  t.like(await outcome(b.peer, timed, CALL_MS), { state: 'rejected', code: 'ETIMEDOUT', uid: 1001, isBusError: true });
  const aborted = await b.peer.call<number>('startWaitingSend', b.to, 'never', true, 100);
  t.like(await outcome(b.peer, aborted, CALL_MS), { state: 'rejected', name: 'AbortError' });
  await waiting(bus, 's0', 0);
  t.is((await a.call<unknown[]>('drain')).length, filled, 'neither went through');
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});

test('waiting senders go through in the order they started waiting', async (t) => {
  const { bus, a, s } = await setup(t, 3);
  let queued = 0;
  for (const p of s) queued += await fill(p);
  const ids: number[] = [];
  for (let i = 0; i < s.length; i++) {
    ids.push(await s[i].peer.call<number>('startWaitingSend', s[i].to, `waited ${i}`, true));
    await waiting(bus, `s${i}`, 1);
  }
  // Drain one at a time: every give-back lets at most the head of the queue in.
  const got: string[] = [];
  while (got.length < s.length) {
    const m = await within(CALL_MS, a.call<{ value: string }>('recvValue'), 'recv');
    if (m.value !== 'fill') got.push(m.value);
    else queued--;
  }
  t.deepEqual(got, ['waited 0', 'waited 1', 'waited 2']);
  t.is(queued, 0, 'every earlier message arrived first');
  for (let i = 0; i < s.length; i++) t.is((await outcome(s[i].peer, ids[i], CALL_MS)).state, 'resolved');
  await backAtMax(t, bus, { 1001: 1, 1002: 1, 1003: 1, 1004: 1 });
});

test('an all-or-nothing multicast waits until every destination accepts', async (t) => {
  const bus = await Bus.start({ users: { 1001: { messages: 8 } } });
  t.teardown(() => bus.close().catch(() => undefined));
  const full = await Everyday.spawn(t, bus, 1001, { nodes: ['inbox'] });
  const free = await Everyday.spawn(t, bus, 1005, { nodes: ['inbox'] });
  const b = await Everyday.spawn(t, bus, 1002, { handles: { full: full.spawned.nodes.inbox, free: free.spawned.nodes.inbox }, name: 'b' });
  const h = await b.handles();
  const filled = await fill({ peer: b, to: h.full });
  const id = await b.call<number>('startWaitingSend', [h.full, h.free], 'both', true);
  await waiting(bus, 'b', 1);
  t.is(await free.call('tryRecv'), 'undefined', 'nobody gets it while one destination refuses');
  t.is((await full.call<unknown[]>('recvMany', filled)).length, filled);
  t.is((await outcome(b, id, CALL_MS)).state, 'resolved');
  t.like(await full.call('recvValue'), { value: 'both' });
  t.like(await free.call('recvValue'), { value: 'both' });
  await backAtMax(t, bus, { 1001: 1, 1002: 2, 1005: 1 });
});

test('a waiting peer that dies passes its turn on', async (t) => {
  const { bus, a, s: [b, c] } = await setup(t, 2);
  await fill(b);
  await fill(c);
  await b.peer.call<number>('startWaitingSend', b.to, 'from b', true);
  await waiting(bus, 's0', 1);
  const id = await c.peer.call<number>('startWaitingSend', c.to, 'from c', true);
  await waiting(bus, 's1', 1);
  await b.peer.spawned.worker.terminate();
  // Drain until c's message arrives: b, queued ahead of c, is gone and must not hold c back.
  while ((await within(CALL_MS, a.call<{ value: string }>('recvValue'), 'recv')).value !== 'from c') { /* earlier messages */ }
  t.is((await outcome(c.peer, id, CALL_MS)).state, 'resolved');
  await backAtMax(t, bus, { 1001: 1, 1002: 0, 1003: 1 });
});
