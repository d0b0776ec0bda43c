/*
 * Subscribe+Event{n} (issue 11, point 3), in real workers: a publish is one partial
 * multicast, so a stalled subscriber whose uid runs out of quota misses events (EDQUOT,
 * reported with its uid) while a fast one gets every event; subscriptions that are closed
 * or whose subscriber died are dropped and counted; an iteration ends when the publisher
 * drops the subscription or is gone; a topic of more than 1024 subscriptions publishes in
 * chunks and reports every chunk's refusals and drops; bad publish options are EINVAL; and
 * every uid is back at its maximum afterwards.
 */

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { Bus, BusError } from '../src/index.js';
import { Everyday, backAtMax, within } from './fixtures/everyday-remote.js';

const test = anyTest.serial as TestFn;
const CALL_MS = 10_000;

interface Report { delivered: number; dropped: number; refused: Array<{ uid: number; code: string; errorUid?: number }> }

/** A publisher (uid 1001, node 'events'); subscribers are added by the tests. */
async function setup(t: ExecutionContext, users?: Record<number, { messages?: number }>) {
  const bus = await Bus.start({ users });
  t.teardown(() => bus.close().catch(() => undefined));
  const pub = await Everyday.spawn(t, bus, 1001, { nodes: ['events'] });
  await pub.call('startPublisher');
  const subscriber = async (uid: number) => {
    const s = await Everyday.spawn(t, bus, uid, { handles: { events: pub.spawned.nodes.events } });
    return { peer: s, events: (await s.handles()).events };
  };
  return { bus, pub, subscriber };
}

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + CALL_MS;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${CALL_MS} ms (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const size = (pub: Everyday) => pub.call<{ size: number; subscribeData: unknown[] }>('publisherState');
const state = (s: Everyday, node: number) => s.call<{ events: unknown[]; ended: boolean }>('subState', node);

test('a stalled subscriber over quota misses events, reported with its uid, while a fast one gets every event', async (t) => {
  const { bus, pub, subscriber } = await setup(t, { 1003: { messages: 8 } });
  const fast = await subscriber(1002);
  const slow = await subscriber(1003);
  const fastSub = await within(CALL_MS, fast.peer.call<number>('subscribe', fast.events, { hello: 'fast' }), 'subscribe fast');
  const slowSub = await within(CALL_MS, slow.peer.call<number>('subscribe', slow.events, 'slow', true), 'subscribe slow');
  const st = await until(() => size(pub), (s) => s.size === 2, 'both subscribed');
  t.deepEqual(st.subscribeData, [{ hello: 'fast' }, 'slow'], 'the data sent with subscribe() reaches the publisher');
  const n = 30;
  const reports: Report[] = [];
  for (let i = 0; i < n; i++) reports.push(await within(CALL_MS, pub.call<Report>('publish', { i }), `publish ${i}`));
  const refused = reports.flatMap((r) => r.refused);
  t.true(refused.length > 0, 'the stalled subscriber ran out of quota');
  for (const r of refused) t.deepEqual(r, { uid: 1003, code: 'EDQUOT', errorUid: 1003 });
  for (const r of reports) {
    t.is(r.delivered + r.refused.length, 2, 'each event went to both or was refused for one');
    t.is(r.dropped, 0);
  }
  const got = await until(() => state(fast.peer, fastSub), (s) => s.events.length === n, 'fast got everything');
  t.deepEqual(got.events, Array.from({ length: n }, (_, i) => ({ i })), 'every event, in order');
  // The stalled one, once it reads, has exactly the events it was not refused.
  const delivered = reports.map((r, i) => [r, i] as const).filter(([r]) => r.refused.length === 0).map(([, i]) => ({ i }));
  t.deepEqual(await within(CALL_MS, slow.peer.call('subDrain', slowSub, delivered.length), 'drain'), delivered);
  await fast.peer.call('subClose', fastSub);
  await slow.peer.call('subClose', slowSub);
  await until(() => pub.call<Report>('publish', 'after'), (r) => r.delivered === 0, 'both gone');
  t.is((await size(pub)).size, 0);
  await backAtMax(t, bus, { 1001: 1, 1002: 1, 1003: 1 });
});

test('closed subscriptions and dead subscribers are dropped and counted at the next publish', async (t) => {
  const { bus, pub, subscriber } = await setup(t);
  const a = await subscriber(1002);
  const b = await subscriber(1003);
  const c = await subscriber(1004);
  const subA = await a.peer.call<number>('subscribe', a.events);
  await b.peer.call<number>('subscribe', b.events);
  const subC = await c.peer.call<number>('subscribe', c.events);
  await until(() => size(pub), (s) => s.size === 3, 'three subscribed');
  t.like(await pub.call<Report>('publish', 1), { delivered: 3, dropped: 0, refused: [] });
  await a.peer.call('subClose', subA);
  await b.peer.spawned.worker.terminate();
  // Found gone by the publish itself or by the node-destroys before it: counted once either way.
  let dropped = 0;
  let last: Report;
  do {
    last = await pub.call<Report>('publish', 2);
    dropped += last.dropped;
  } while (dropped < 2 && last.delivered > 0);
  t.is(dropped, 2);
  t.is(last.delivered, 1, 'the live subscriber still gets it');
  t.is((await size(pub)).size, 1);
  t.deepEqual((await until(() => state(c.peer, subC), (s) => s.events.length >= 2, 'c')).events.slice(0, 2), [1, 2]);
  await c.peer.call('subClose', subC);
  await until(() => pub.call<Report>('publish', 3), (r) => r.delivered === 0, 'c gone');
  await backAtMax(t, bus, { 1001: 1, 1002: 1, 1003: 0, 1004: 1 });
});

test('an iteration ends when the publisher drops the subscription, and when the publisher is gone', async (t) => {
  const { bus, pub, subscriber } = await setup(t);
  const a = await subscriber(1002);
  const b = await subscriber(1003);
  const subA = await a.peer.call<number>('subscribe', a.events);
  await until(() => size(pub), (s) => s.size === 1, 'a subscribed');
  await pub.call('publish', 'one');
  await pub.call('closeTopic');
  t.deepEqual((await until(() => state(a.peer, subA), (s) => s.ended, 'a ended')).events, ['one'], 'queued events first, then the end');
  // Publisher gone: a new publisher-less subscription ends too.
  const subB = await b.peer.call<number>('subscribe', b.events);
  await until(() => size(pub), (s) => s.size === 1, 'b subscribed');
  await pub.spawned.worker.terminate();
  t.true((await until(() => state(b.peer, subB), (s) => s.ended, 'b ended')).ended);
  await backAtMax(t, bus, { 1001: 0, 1002: 1, 1003: 1 });
});

test('a publish with opts that are not an object is refused with EINVAL and sends nothing', async (t) => {
  const { bus, pub, subscriber } = await setup(t);
  const a = await subscriber(1002);
  const subA = await a.peer.call<number>('subscribe', a.events);
  await until(() => size(pub), (s) => s.size === 1, 'a subscribed');
  for (const bad of [null, 5, 'handles']) {
    await t.throwsAsync(pub.call('publish', 'bad', bad), { instanceOf: BusError, code: 'EINVAL', message: /opts must be an object/ });
  }
  t.like(await pub.call<Report>('publish', 'good', { handles: [] }), { delivered: 1, dropped: 0, refused: [] });
  t.deepEqual((await until(() => state(a.peer, subA), (s) => s.events.length >= 1, 'a got it')).events, ['good'], 'only the good publish arrived');
  await a.peer.call('subClose', subA);
  await until(() => pub.call<Report>('publish', 'after'), (r) => r.delivered === 0, 'a gone');
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});

test('subscribing to a destroyed node fails with ESHUTDOWN and leaves nothing behind', async (t) => {
  const { bus, pub, subscriber } = await setup(t);
  const a = await subscriber(1002);
  await pub.spawned.worker.terminate();
  await until(() => a.peer.call<{ kind: string }>('recvValue'), (m) => m.kind === 'node-destroy', 'node-destroy');
  await t.throwsAsync(a.peer.call('subscribe', a.events), { message: /destroyed|shut/ });
  await backAtMax(t, bus, { 1001: 0, 1002: 1 });
});

test('a topic of more subscriptions than one multicast may name publishes in chunks, and reports refusals and drops in every chunk', async (t) => {
  // MAX_DESTINATIONS (1024) per partial multicast: 1025 subscriptions of uid 1002 and one
  // stalled subscription of uid 1003 (a small limit) put the stalled one in the second chunk.
  const { bus, pub, subscriber } = await setup(t, { 1003: { messages: 2 } });
  const many = await subscriber(1002);
  const stalled = await subscriber(1003);
  const nodes = await within(60_000, many.peer.call<number[]>('subscribeMany', many.events, 1025), 'subscribe 1025 times');
  const slowSub = await stalled.peer.call<number>('subscribe', stalled.events, 'slow', true);
  await until(() => size(pub), (s) => s.size === 1026, 'all subscribed');
  const reports: Report[] = [];
  for (let i = 0; i < 4; i++) reports.push(await within(CALL_MS, pub.call<Report>('publish', i), `publish ${i}`));
  for (const r of reports) t.is(r.delivered + r.refused.length, 1026, 'each event went to every subscription or was refused');
  t.is(reports[0].delivered, 1026, 'the first event reaches every subscription');
  t.true(reports.some((r) => r.refused.length > 0), 'the stalled one ran out of quota');
  for (const r of reports.flatMap((x) => x.refused)) t.deepEqual(r, { uid: 1003, code: 'EDQUOT', errorUid: 1003 }, 'refused in the second chunk, with its uid');
  const counts = await until(() => many.peer.call<number[]>('subCounts', nodes), (c) => c.every((n) => n === 4), 'every subscription got 4');
  t.is(counts.length, 1025);
  // One subscription closed in each chunk: the next publishes drop and count both.
  await many.peer.call('subClose', nodes[0]);
  await stalled.peer.call('subClose', slowSub);
  let dropped = 0;
  let last: Report;
  const deadline = Date.now() + CALL_MS;
  do {
    last = await pub.call<Report>('publish', 'after');
    dropped += last.dropped;
  } while (dropped < 2 && Date.now() < deadline);
  t.is(dropped, 2);
  t.is(last.delivered, 1024, 'the live subscriptions still get it');
  t.is((await size(pub)).size, 1024);
  for (const node of nodes.slice(1)) await many.peer.call('subClose', node);
  await until(() => pub.call<Report>('publish', 'end'), (r) => r.delivered === 0, 'all gone');
  await backAtMax(t, bus, { 1001: 1, 1002: 1, 1003: 1 });
});
