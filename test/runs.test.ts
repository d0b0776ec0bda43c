/*
 * Runs of sends (src/coordinator/core.ts, Runs): consecutive unicasts to one peer, and
 * consecutive multicasts without handles to the same destination list, are charged as
 * one run against headroom read once. Runs form only when the coordinator finds several
 * records in a sender's ring at once, which a worker cannot force; so the property test
 * drives a coordinator and its peers in this thread (perf/in-thread.ts) and compares
 * every send processed alone with all of them in one batch. The worker tests check the
 * same rules end to end: where one destination's quota ends the stream stops (bus1's
 * all-or-nothing multicast), and once everything is read and released every receiving
 * uid is whole again.
 */

import test, { type ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { Bus, BusError, Peer, type Message } from '../src/index.js';
import { inThreadBus } from '../perf/in-thread.js';
import { startPostWorker } from './helpers/post-worker.js';

/** uid 3 holds 8 messages, so one sending uid may have 4 of them in flight (the half rule). */
async function setup(t: ExecutionContext, bNodes: number) {
  const bus = await Bus.start({ users: { 3: { messages: 8 } } });
  const at = await bus.createPeer({ uid: 2 });
  const bt = await bus.createPeer({ uid: 3 });
  const ct = await bus.createPeer({ uid: 4 });
  const st = await bus.createPeer({ uid: 1 });
  const to: number[] = [];
  to.push(await bus.transferHandle(at, await bus.createNode(at), st));
  for (let i = 0; i < bNodes; i++) to.push(await bus.transferHandle(bt, await bus.createNode(bt), st));
  to.push(await bus.transferHandle(ct, await bus.createNode(ct), st));
  const receivers = { a: Peer.open(at), b: Peer.open(bt), c: Peer.open(ct) };
  const call = startPostWorker(t, bus, st, to);
  return { bus, receivers, call };
}

/** Everything the peer has queued, released as it is read: [text, seq] pairs. */
function drain(peer: Peer): Array<[string, number]> {
  const got: Array<[string, number]> = [];
  for (let m: Message | undefined = peer.tryRecv(); m !== undefined; m = peer.tryRecv()) {
    got.push([m.text(), Number(m.seq)]);
    m.release();
  }
  return got;
}

type Usage = Awaited<ReturnType<Bus['usage']>>;

async function usages(bus: Bus, uids: number[]): Promise<Usage[]> {
  return Promise.all(uids.map((uid) => bus.usage(uid)));
}

/** Wait (bounded) until every receiving uid is back where it was before the sends (`before`), then check it. */
async function assertWhole(t: ExecutionContext, bus: Bus, uids: number[], before: Usage[]): Promise<void> {
  const want = JSON.stringify(before);
  for (let i = 0; i < 200 && JSON.stringify(await usages(bus, uids)) !== want; i++) await sleep(25);
  const now = await usages(bus, uids);
  for (let i = 0; i < uids.length; i++) {
    t.deepEqual(now[i]!.remaining, before[i]!.remaining, `uid ${uids[i]} has all its quota back`);
    t.deepEqual(now[i]!.shares, {}, `uid ${uids[i]} holds no sender's share`);
  }
}

test('a stream of multicasts stops where one destination runs out of quota: earlier sends reach everyone, that one and every later one are refused, and every uid ends whole', async (t) => {
  const { bus, receivers, call } = await setup(t, 1);
  const before = await usages(bus, [2, 3, 4]);
  const r = await call({ op: 'post', count: 10 });
  t.is(r.posted, 10);
  t.deepEqual(r.rejected.map((x) => x.index), [4, 5, 6, 7, 8, 9]);
  for (const x of r.rejected) t.like(x, { code: 'EDQUOT', resource: 'messages', uid: 3 });
  const a = drain(receivers.a), b = drain(receivers.b), c = drain(receivers.c);
  const first4 = ['0', '1', '2', '3'];
  t.deepEqual(a.map((x) => x[0]), first4);
  t.deepEqual(b.map((x) => x[0]), first4);
  t.deepEqual(c.map((x) => x[0]), first4);
  // One transaction each: every destination saw the same sequence number for it.
  t.deepEqual(b.map((x) => x[1]), a.map((x) => x[1]));
  t.deepEqual(c.map((x) => x[1]), a.map((x) => x[1]));
  await assertWhole(t, bus, [2, 3, 4], before);

  // Posting the refused ones again, draining between rounds, delivers the rest once, in order.
  const all = { a: a.map((x) => x[0]), b: b.map((x) => x[0]), c: c.map((x) => x[0]) };
  let again = await call({ op: 'retry' });
  for (let round = 0; ; round++) {
    t.true(round < 20, 'the stream makes progress each round');
    all.a.push(...drain(receivers.a).map((x) => x[0]));
    all.b.push(...drain(receivers.b).map((x) => x[0]));
    all.c.push(...drain(receivers.c).map((x) => x[0]));
    if (again.rejected.length === 0) break;
    again = await call({ op: 'retry' });
  }
  const ten = Array.from({ length: 10 }, (_, i) => String(i));
  t.deepEqual(all, { a: ten, b: ten, c: ten });
  await assertWhole(t, bus, [2, 3, 4], before);
});

test('a multicast naming two nodes of one peer charges that peer twice per send', async (t) => {
  const { bus, receivers, call } = await setup(t, 2);
  const before = await usages(bus, [2, 3, 4]);
  // uid 3 takes 4 of its 8 messages from uid 1: two sends of two messages each.
  const r = await call({ op: 'post', count: 10 });
  t.deepEqual(r.rejected.map((x) => x.index), [2, 3, 4, 5, 6, 7, 8, 9]);
  for (const x of r.rejected) t.like(x, { code: 'EDQUOT', resource: 'messages', uid: 3 });
  t.deepEqual(drain(receivers.a).map((x) => x[0]), ['0', '1']);
  t.deepEqual(drain(receivers.b).map((x) => x[0]), ['0', '0', '1', '1']);
  t.deepEqual(drain(receivers.c).map((x) => x[0]), ['0', '1']);
  await assertWhole(t, bus, [2, 3, 4], before);
});

// ---- the same sends, one per coordinator round or all in one batch ------------------------

interface Scenario {
  /** Messages and bytes each receiving uid (2, 3, 4) holds. */
  limits: Array<{ messages: number; bytes: number }>;
  /** Nodes each receiver owns (the sender holds a handle to each). */
  nodes: number[];
  /** Each send: indices into the sender's handles (one: a unicast), its payload size, and whether it is a partial send() rather than a post(). */
  sends: Array<{ dests: number[]; bytes: number; partial: boolean }>;
}

interface Outcome {
  rejected: Array<[number, string]>;
  partial: string[];
  received: string[][];
  usage: unknown[];
}

/**
 * Play a scenario on a coordinator in this thread: with `batched`, every post is in the
 * ring before the coordinator looks (runs of sends form), else it processes each post
 * alone (every send charged on its own). Nothing is read until the end, so the two
 * must agree on every verdict, every delivery and every ledger.
 */
async function play(s: Scenario, batched: boolean): Promise<Outcome> {
  const bus = inThreadBus(
    { 2: s.limits[0]!, 3: s.limits[1]!, 4: s.limits[2]! }, { messages: 256, handles: 256, bytes: 1 << 20 },
  );
  const { coordinator } = bus;
  const sender = bus.open(1);
  const receivers = [bus.open(2), bus.open(3), bus.open(4)];
  const handles: number[] = [];
  receivers.forEach((r, i) => {
    for (let k = 0; k < s.nodes[i]!; k++) handles.push(bus.handleTo(r.id, sender.id));
  });
  const ids: number[] = [];
  const partial: Array<Promise<string>> = [];
  s.sends.forEach((send, i) => {
    const to = [...new Set(send.dests.map((d) => handles[d % handles.length]!))];
    const data = `${i}:`.padEnd(send.bytes, '.');
    if (send.partial) partial.push(sender.peer.send(to, data, { partial: true }).then((r) => JSON.stringify(r), (e: BusError) => e.code));
    else ids.push(sender.peer.post(to.length === 1 ? to[0]! : to, data));
    if (!batched) coordinator.runOnce();
  });
  const flushed = sender.peer.flush();
  for (let i = 0; i < 4; i++) coordinator.runOnce();
  const settled = Promise.all([flushed, Promise.all(partial)]);
  const [report, partialResults] = await Promise.race([
    settled, sleep(10_000).then(() => { throw new Error('flush() or a send() did not settle'); }),
  ]);
  const received = receivers.map((r) => {
    const got: string[] = [];
    for (let m = r.peer.tryRecv(); m !== undefined; m = r.peer.tryRecv()) got.push(`${m.seq} ${m.text().split(':')[0]}`);
    return got;
  });
  const usage = [1, 2, 3, 4].map((uid) => coordinator.usage(uid));
  coordinator.closeAll();
  return { rejected: report.rejected.map((r) => [ids.indexOf(r.id), r.error.code]), partial: partialResults, received, usage };
}

test('runs of sends, partial multicasts among them, admit and refuse exactly what charging each send alone does: verdicts, deliveries, order and ledgers', async (t) => {
  // Sends come in streaks to one of a few destination lists, so that runs form and break.
  const list = fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 6 });
  const streak = fc.record({
    list: fc.nat(2), count: fc.integer({ min: 1, max: 8 }), bytes: fc.integer({ min: 4, max: 700 }), partial: fc.boolean(),
  });
  const scenario = fc.record({
    limits: fc.array(fc.record({ messages: fc.integer({ min: 2, max: 24 }), bytes: fc.integer({ min: 2048, max: 16_000 }) }),
      { minLength: 3, maxLength: 3 }),
    nodes: fc.array(fc.integer({ min: 1, max: 2 }), { minLength: 3, maxLength: 3 }),
    lists: fc.array(list, { minLength: 3, maxLength: 3 }),
    streaks: fc.array(streak, { minLength: 1, maxLength: 8 }),
  }).map(({ limits, nodes, lists, streaks }): Scenario => ({
    limits, nodes, sends: streaks.flatMap((k) => Array.from({ length: k.count }, (_, i) => ({ dests: lists[k.list]!, bytes: k.bytes + i, partial: k.partial }))),
  }));
  let refusals = 0, runsSeen = 0;
  await fc.assert(fc.asyncProperty(scenario, async (s) => {
    const alone = await play(s, false);
    const batched = await play(s, true);
    t.deepEqual(batched, alone);
    refusals += alone.rejected.length > 0 ? 1 : 0;
    runsSeen += s.sends.length - alone.rejected.length >= 3 ? 1 : 0;
  }), { numRuns: 60 });
  // The scenarios must have covered both ends: streams cut by the quota, and runs of several sends.
  t.true(refusals >= 10 && runsSeen >= 10, `${refusals} scenarios with refusals, ${runsSeen} with runs`);
});
