/*
 * bus.spawn() and Peer.open() with no argument (issue 11, point 1): one call makes the
 * peer, its named nodes and handles, and the Worker; bad names, unknown references and a
 * worker that never opens its peer give clear BusErrors and leave nothing charged.
 */

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { Bus, BusError, Peer } from '../src/index.js';
import { Everyday, backAtMax, within } from './fixtures/everyday-remote.js';

const test = anyTest.serial as TestFn;
const CALL_MS = 10_000;
const UNOPENED = new URL('./fixtures/everyday-unopened.js', import.meta.url);

async function start(t: ExecutionContext) {
  const bus = await Bus.start();
  t.teardown(() => bus.close().catch(() => undefined));
  return bus;
}

test('a spawned worker opens its peer with Peer.open() and finds its nodes and handles by name', async (t) => {
  const bus = await start(t);
  const db = await Everyday.spawn(t, bus, 1001, { nodes: ['db'] });
  const svc = await Everyday.spawn(t, bus, 1002, { nodes: ['rpc', 'events'], handles: { db: db.spawned.nodes.db }, name: 'svc' });
  const dbNames = await db.handles();
  const svcNames = await svc.handles();
  t.deepEqual(Object.keys(dbNames), ['db']);
  t.deepEqual(Object.keys(svcNames).sort(), ['db', 'events', 'rpc']);
  t.is(svcNames.rpc, svc.spawned.nodes.rpc.handle, 'the owner-side reference names the peer\'s own handle');
  // The handle works: svc sends to db through it.
  await within(CALL_MS, svc.call('sendValue', svcNames.db, 'through db'), 'send');
  t.like(await within(CALL_MS, db.call('recvValue'), 'recv'), { value: 'through db', destination: dbNames.db, senderUid: 1002 });
  // A node reference is accepted by bus.transferHandle() too.
  const client = await Everyday.spawn(t, bus, 1003);
  const h = await bus.transferHandle(svc.ticket, svc.spawned.nodes.rpc, client.ticket);
  await within(CALL_MS, client.call('sendValue', h, 'to rpc'), 'send to rpc');
  t.like(await within(CALL_MS, svc.call('recvValue'), 'recv at rpc'), { value: 'to rpc', destination: svcNames.rpc });
  t.true((await bus.stats()).byPeer.some((p) => p.name === 'svc' && p.uid === 1002), 'the worker name shows in stats');
  await backAtMax(t, bus, { 1001: 1, 1002: 3, 1003: 1 });
});

test('workerData and other WorkerOptions pass through spawn, and exited resolves with the exit code', async (t) => {
  const bus = await start(t);
  const q = await bus.spawn(new URL('./fixtures/everyday-peer.js', import.meta.url), {
    uid: 1002, workerData: { hello: [1, 2] }, env: { X: 'y' }, name: 'with-data',
  });
  t.teardown(() => q.worker.terminate());
  await new Promise<void>((resolve) => {
    q.worker.on('message', (m) => { if (m.id === 77) { t.deepEqual(m.value, { hello: [1, 2] }); resolve(); } });
    q.worker.postMessage({ id: 77, method: 'workerData', args: [] });
  });
  await q.worker.terminate();
  t.is(await q.exited, 1, 'terminate() ends the worker with code 1');
  await backAtMax(t, bus, { 1002: 0 });
});

test('bad names and references are refused with clear BusErrors before anything is created', async (t) => {
  const bus = await start(t);
  const url = new URL('./fixtures/everyday-peer.js', import.meta.url);
  const cases: Array<[string, object, string]> = [
    ['a name starting with a digit', { nodes: ['1rpc'] }, 'EINVAL'],
    ['an empty name', { nodes: [''] }, 'EINVAL'],
    ['a name with a dash', { nodes: ['rpc-1'] }, 'EINVAL'],
    ['a name that is not a string', { nodes: [5] }, 'EINVAL'],
    ['nodes not an array', { nodes: 'rpc' }, 'EINVAL'],
    ['a name given twice', { nodes: ['rpc', 'rpc'] }, 'ENOTUNIQ'],
    ['a node and a handle of one name', { nodes: ['x'], handles: { x: null } }, 'ENOTUNIQ'],
    ['a handle that is a plain number', { handles: { db: 1 } }, 'EINVAL'],
    ['a handle that is an object', { handles: { db: { handle: 1 } } }, 'EINVAL'],
  ];
  for (const [what, opts, code] of cases) {
    const err = await t.throwsAsync(within(CALL_MS, bus.spawn(url, { uid: 1001, ...opts } as never), what), undefined, what);
    t.true(err instanceof BusError, `${what}: ${String(err)}`);
    t.is<string, string>((err as BusError).code, code, `${what}: ${err?.message}`);
  }
  t.is((await bus.stats()).peers, 0, 'no peer was made');
  await backAtMax(t, bus, { 1001: 0 });
});

test('a reference to a node whose peer is gone fails the spawn, and the half-made peer is given back', async (t) => {
  const bus = await start(t);
  const gone = await Everyday.spawn(t, bus, 1001, { nodes: ['db'] });
  await gone.spawned.worker.terminate();
  const gonePeer = (await bus.stats()).byPeer.length;
  for (const until = Date.now() + CALL_MS; (await bus.stats()).byPeer.length === gonePeer && gonePeer > 0 && Date.now() < until;) {
    await new Promise((r) => setTimeout(r, 5)); // until the coordinator has seen the death
  }
  const err = await t.throwsAsync(within(CALL_MS, bus.spawn(new URL('./fixtures/everyday-peer.js', import.meta.url),
    { uid: 1002, nodes: ['own'], handles: { db: gone.spawned.nodes.db } }), 'spawn'));
  t.true(err instanceof BusError);
  t.is((err as BusError).code, 'ESHUTDOWN', err?.message);
  await backAtMax(t, bus, { 1001: 0, 1002: 0 });
  const deadline = Date.now() + CALL_MS;
  while ((await bus.stats()).peers !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.is((await bus.stats()).peers, 0, 'the half-made peer is disconnected');
});

test('a worker that exits before opening its peer fails the spawn with ESHUTDOWN, and nothing stays charged', async (t) => {
  const bus = await start(t);
  const other = await Everyday.spawn(t, bus, 1001, { nodes: ['db'] });
  const err = await t.throwsAsync(within(CALL_MS, bus.spawn(UNOPENED, {
    uid: 1002, nodes: ['a', 'b'], handles: { db: other.spawned.nodes.db }, workerData: { mode: 'exit', code: 3 },
  }), 'spawn'));
  t.true(err instanceof BusError, String(err));
  t.is((err as BusError).code, 'ESHUTDOWN');
  t.regex(err!.message, /exited \(code 3\) before opening its peer/);
  await backAtMax(t, bus, { 1001: 1, 1002: 0 });
});

test('a worker that never opens its peer is terminated after openTimeout with ETIMEDOUT, and nothing stays charged', async (t) => {
  const bus = await start(t);
  const err = await t.throwsAsync(within(CALL_MS, bus.spawn(UNOPENED, {
    uid: 1002, nodes: ['a'], workerData: { mode: 'idle' }, openTimeout: 200,
  }), 'spawn'));
  t.true(err instanceof BusError, String(err));
  t.is((err as BusError).code, 'ETIMEDOUT');
  await backAtMax(t, bus, { 1002: 0 });
});

test('Peer.open() without a ticket outside a spawned worker is EINVAL', (t) => {
  const err = t.throws(() => Peer.open());
  t.true(err instanceof BusError);
  t.is((err as BusError).code, 'EINVAL');
  t.regex(err!.message, /bus\.spawn\(\)/);
});
