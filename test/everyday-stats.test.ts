/*
 * bus.stats() (issue 11, point 6): counters of sends, receives, bytes and refusals by
 * uid and by peer, as the coordinator keeps them, read while peers in real workers send.
 */

import anyTest, { type TestFn } from 'ava';
import { Bus, type BusStats } from '../src/index.js';
import { Everyday, backAtMax, within } from './fixtures/everyday-remote.js';

const test = anyTest.serial as TestFn;
const CALL_MS = 10_000;

test('bus.stats() counts sends, receives, bytes and refusals by uid and by peer', async (t) => {
  const bus = await Bus.start({ users: { 1001: { messages: 16 } } });
  t.teardown(() => bus.close().catch(() => undefined));
  const a = await Everyday.spawn(t, bus, 1001, { nodes: ['inbox'], name: 'a' });
  const b = await Everyday.spawn(t, bus, 1002, { handles: { a: a.spawned.nodes.inbox }, name: 'b' });
  const c = await Everyday.spawn(t, bus, 1003, { handles: { a: a.spawned.nodes.inbox } });
  const toA = (await b.handles()).a;
  const s0 = await bus.stats();
  t.is(s0.peers, 3);
  for (let i = 0; i < 5; i++) await b.call('sendValue', toA, 'x'); // 1 byte each: charged 8
  t.is((await a.call<unknown[]>('recvMany', 3)).length, 3);
  const filled = await within(CALL_MS, c.call<{ sent: number; code: string }>('fill', toA, 100), 'fill');
  t.is(filled.code, 'EDQUOT');
  await t.throwsAsync(b.call('sendValue', toA + 50, 'nobody'), { message: /not known/ });
  const s = await bus.stats();
  t.like(s.byUid[1002], { sent: 5, bytesSent: 40, received: 0, refused: { ENXIO: 1 } });
  t.like(s.byUid[1003], { sent: filled.sent, refused: { EDQUOT: 1 } });
  t.like(s.byUid[1001], { received: 3, bytesReceived: 24, sent: 0, queued: 2 + filled.sent });
  t.true(Object.values(s.byUid[1001].refused).every((n) => n === 0), 'the receiver was refused nothing');
  t.is(s.byUid[1002].refused.EDQUOT, 0, 'every code is there, zeros included');
  const pa = s.byPeer.find((p) => p.name === 'a')!;
  t.like(pa, { uid: 1001, received: 3, queued: 2 + filled.sent, pending: 0, waiting: 0 });
  t.like(s.byPeer.find((p) => p.name === 'b'), { uid: 1002, sent: 5, received: 0 });
  t.true(s.seq >= s0.seq + 5 + filled.sent, 'seq counts every transaction');
  await a.call('drain');
  const s2 = await bus.stats();
  t.like(s2.byUid[1001], { received: 5 + filled.sent, queued: 0 });
  await backAtMax(t, bus, { 1001: 1, 1002: 1, 1003: 1 });
});

test('bus.stats() can be read many times while a load runs, and its counters only grow', async (t) => {
  const bus = await Bus.start();
  t.teardown(() => bus.close().catch(() => undefined));
  const a = await Everyday.spawn(t, bus, 1001, { nodes: ['inbox'] });
  const b = await Everyday.spawn(t, bus, 1002, { handles: { a: a.spawned.nodes.inbox } });
  const toA = (await b.handles()).a;
  const n = 2000;
  const load = Promise.all([b.call('fill', toA, n), a.call('recvMany', n, { timeoutMs: 20_000 })]);
  let done = false;
  void load.finally(() => { done = true; });
  const seen: BusStats[] = [];
  while (!done) seen.push(await bus.stats());
  await within(30_000, load, 'load');
  seen.push(await bus.stats());
  t.true(seen.length >= 2);
  for (let i = 1; i < seen.length; i++) {
    t.true(seen[i].byUid[1002].sent >= seen[i - 1].byUid[1002].sent, 'sent never decreases');
    t.true(seen[i].byUid[1001].received >= seen[i - 1].byUid[1001].received, 'received never decreases');
    t.true(seen[i].seq >= seen[i - 1].seq);
  }
  t.like(seen.at(-1)!.byUid[1002], { sent: n });
  t.like(seen.at(-1)!.byUid[1001], { received: n, queued: 0 });
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});

test('replies are charged to, and counted at, the requester\'s uid', async (t) => {
  const bus = await Bus.start();
  t.teardown(() => bus.close().catch(() => undefined));
  const svc = await Everyday.spawn(t, bus, 1001, { nodes: ['rpc'] });
  const client = await Everyday.spawn(t, bus, 1002, { handles: { rpc: svc.spawned.nodes.rpc } });
  await svc.call('startService', 'echo');
  await within(CALL_MS, client.call('requestMany', (await client.handles()).rpc, 10), 'requests');
  const s = await bus.stats();
  t.like(s.byUid[1002], { sent: 10, received: 10 });
  t.like(s.byUid[1001], { sent: 10, received: 10 });
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});
