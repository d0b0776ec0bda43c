/*
 * Request+Reply (issue 11, point 2), in real workers: replies resolve requests; a silent
 * service gives ETIMEDOUT, a terminated one ESHUTDOWN long before the timeout, an abort an
 * AbortError; a second reply is EINVAL; a reply to a requester that gave up or died fails
 * with ESHUTDOWN; and after each test every uid is back at its maximum (the one-use reply
 * nodes and handles are all gone).
 */

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { Bus } from '../src/index.js';
import { Everyday, backAtMax, within, type Outcome, type Seen } from './fixtures/everyday-remote.js';

const test = anyTest.serial as TestFn;
const CALL_MS = 10_000;

/** A service (uid 1001, node 'rpc') in `mode`, and a client (uid 1002) holding a handle to it. */
async function setup(t: ExecutionContext, mode: 'echo' | 'silent' | 'twice', opts: { clientLimits?: object } = {}) {
  const bus = await Bus.start();
  t.teardown(() => bus.close().catch(() => undefined));
  const svc = await Everyday.spawn(t, bus, 1001, { nodes: ['rpc'] });
  const client = await Everyday.spawn(t, bus, 1002, { handles: { rpc: svc.spawned.nodes.rpc }, limits: opts.clientLimits });
  await svc.call('startService', mode);
  return { bus, svc, client, rpc: (await client.handles()).rpc };
}

async function settled(peer: Everyday, id: number, what: string, ms = CALL_MS): Promise<Outcome> {
  const o = await within(ms + 2000, peer.call<Outcome>('outcome', id, ms), what);
  if (o.state === 'pending') throw new Error(`${what}: still pending after ${ms} ms`);
  return o;
}

test('a request resolves with its reply; values and handles travel both ways, the reply handle stays hidden', async (t) => {
  const { bus, svc, client, rpc } = await setup(t, 'echo');
  const reply = await within(CALL_MS, client.call<Seen>('request', rpc, { n: 1, list: ['a'] }), 'request');
  t.deepEqual(reply.value, { echo: { n: 1, list: ['a'] }, kind: 'value', handles: 0 });
  t.false(reply.isRequest, 'a reply is not itself a request');
  t.is(reply.senderUid, 1001);
  const text = await within(CALL_MS, client.call<Seen>('request', rpc, 'plain text'), 'request text');
  t.deepEqual(text.value, { echo: 'plain text', kind: 'string', handles: 0 });
  // A handle passed with the request reaches the service as msg.handles, without the reply handle.
  const own = await client.call<number>('createNode');
  const withHandle = await settled(client, await client.call<number>('startRequest', rpc, 'h', { handles: [own] }), 'request with handle');
  t.like(withHandle, { state: 'resolved', value: { value: { echo: 'h', kind: 'string', handles: 1 } } });
  await client.call('destroyNodes', [own]);
  await client.call('drain');
  await client.call('releaseHandle', own);
  // Many at once: each gets its own reply.
  t.deepEqual(await within(CALL_MS, client.call('requestMany', rpc, 50), 'requestMany'),
    Array.from({ length: 50 }, (_, i) => ({ echo: i, kind: 'value', handles: 0 })));
  // One after the other, over several batches of reply-node retirement.
  t.deepEqual(await within(CALL_MS, client.call('requestSeq', rpc, 100), 'requestSeq'),
    Array.from({ length: 100 }, (_, i) => ({ echo: i, kind: 'value', handles: 0 })));
  t.is((await svc.call<{ requests: number }>('serviceState')).requests, 153);
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});

test('a request to a service that never answers rejects with ETIMEDOUT, and its late reply() fails with ESHUTDOWN', async (t) => {
  const { bus, svc, client, rpc } = await setup(t, 'silent');
  const id = await client.call<number>('startRequest', rpc, 'anyone?', { timeout: 300 });
  const o = await settled(client, id, 'request');
  t.like(o, { state: 'rejected', code: 'ETIMEDOUT', isBusError: true });
  // Giving up is local; the reply node's destruction reaches the coordinator a moment later.
  await backAtMax(t, bus, { 1002: 1 });
  // The service still holds the request; answering it now is refused, with a clear code.
  let late: Outcome[] = [];
  const deadline = Date.now() + CALL_MS;
  while (late.length === 0 && Date.now() < deadline) {
    if ((await svc.call<{ requests: number }>('serviceState')).requests === 1) late = await svc.call<Outcome[]>('replyHeld');
  }
  t.is(late.length, 1);
  t.like(late[0], { state: 'rejected', code: 'ESHUTDOWN' });
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});

test('a request whose service is terminated rejects with ESHUTDOWN well before its timeout', async (t) => {
  const { bus, svc, client, rpc } = await setup(t, 'silent');
  const id = await client.call<number>('startRequest', rpc, 'hello', { timeout: 120_000 });
  const deadline = Date.now() + CALL_MS;
  while ((await svc.call<{ requests: number }>('serviceState')).requests === 0 && Date.now() < deadline) { /* until it holds the request */ }
  await svc.spawned.worker.terminate();
  // ETIMEDOUT would take two minutes; this must be ESHUTDOWN, and within the call bound.
  const o = await settled(client, id, 'request');
  t.like(o, { state: 'rejected', code: 'ESHUTDOWN', isBusError: true });
  await backAtMax(t, bus, { 1001: 0, 1002: 1 });
});

test('an aborted request rejects with an AbortError, and a reply after it is refused', async (t) => {
  const { bus, svc, client, rpc } = await setup(t, 'silent');
  const id = await client.call<number>('startRequest', rpc, 'slow', { abortAfterMs: 100 });
  const o = await settled(client, id, 'request');
  t.like(o, { state: 'rejected', name: 'AbortError', isBusError: false });
  const deadline = Date.now() + CALL_MS;
  while ((await svc.call<{ requests: number }>('serviceState')).requests === 0 && Date.now() < deadline) { /* until received */ }
  await backAtMax(t, bus, { 1002: 1 }); // the reply node's destruction has reached the coordinator
  t.like((await svc.call<Outcome[]>('replyHeld'))[0], { state: 'rejected', code: 'ESHUTDOWN' });
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});

test('a second reply to one request is refused with EINVAL', async (t) => {
  const { bus, svc, client, rpc } = await setup(t, 'twice');
  t.like(await within(CALL_MS, client.call<Seen>('request', rpc, 1), 'request'), { value: { echo: 1 } });
  let second: Outcome | null = null;
  const deadline = Date.now() + CALL_MS;
  while (second === null && Date.now() < deadline) second = (await svc.call<{ secondReply: Outcome | null }>('serviceState')).secondReply;
  t.like(second, { state: 'rejected', code: 'EINVAL', isBusError: true });
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});

test('when the requester dies, the service\'s reply fails with ESHUTDOWN and nothing stays charged', async (t) => {
  const { bus, svc, client, rpc } = await setup(t, 'silent');
  await client.call<number>('startRequest', rpc, 'then I die', { timeout: 120_000 });
  const deadline = Date.now() + CALL_MS;
  while ((await svc.call<{ requests: number }>('serviceState')).requests === 0 && Date.now() < deadline) { /* until received */ }
  await client.spawned.worker.terminate();
  // Until the coordinator has seen the death (a reply sent before that is delivered, then dropped with the queue).
  while ((await bus.stats()).byPeer.some((p) => p.uid === 1002) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  // The service may see the node-destroy first (then reply() knows at once) or not (then the send fails): ESHUTDOWN either way.
  const late = await svc.call<Outcome[]>('replyHeld');
  t.like(late[0], { state: 'rejected', code: 'ESHUTDOWN' });
  await backAtMax(t, bus, { 1001: 1, 1002: 0 });
});

test('a request rejects with the send\'s own BusError: ENXIO for an unknown handle, EDQUOT when the service\'s uid is full', async (t) => {
  const bus = await Bus.start({ users: { 1001: { messages: 8 } } });
  t.teardown(() => bus.close().catch(() => undefined));
  const svc = await Everyday.spawn(t, bus, 1001, { nodes: ['rpc'] });
  const client = await Everyday.spawn(t, bus, 1002, { handles: { rpc: svc.spawned.nodes.rpc } });
  const rpc = (await client.handles()).rpc;
  t.like(await settled(client, await client.call<number>('startRequest', rpc + 100, 'x'), 'unknown'), { state: 'rejected', code: 'ENXIO' });
  // Nobody reads at the service: its uid fills up, then a request is refused.
  const filled = await within(CALL_MS, client.call<{ sent: number; code: string }>('fill', rpc, 100), 'fill');
  t.is(filled.code, 'EDQUOT');
  t.like(await settled(client, await client.call<number>('startRequest', rpc, 'x'), 'full'), { state: 'rejected', code: 'EDQUOT', uid: 1001 });
  t.is((await svc.call<unknown[]>('drain')).length, filled.sent);
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});
