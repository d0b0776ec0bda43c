/*
 * The three cases where threadbus used to differ from bus1's own selftests (test-api.c,
 * test-io.c), issue 10 point 3:
 *   - node-release for the owner's own extra references: when the owner holds extra
 *     references to its own node (a handle to it sent to itself, or transferred to
 *     itself) and releases the last one while no other peer holds the node, it gets a
 *     node-release, exactly once, in the global order; it keeps its node and handle.
 *     The rule is the one for other holders: node-release comes when the last reference
 *     besides the owner's own first one is gone, whoever held it.
 *   - send([], data) and post([], data) are an empty transaction: validated like any
 *     send, delivering nothing and charging nothing.
 * Peers run in api-peer workers; the post() cases use a peer in the test thread, since
 * flush() reports come back as values.
 */

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { Bus, BusError, Peer } from '../src/index.js';
import { TestBus, within } from './helpers/remote-peer.js';
import { Remote, nodeOf, type Received } from './fixtures/api-remote.js';

const test = anyTest.serial as TestFn;
const CALL_MS = 10_000;

async function setup(t: ExecutionContext, n: number): Promise<{ bus: Bus; p: Remote[] }> {
  const tb = await TestBus.start(t);
  const p: Remote[] = [];
  for (let i = 0; i < n; i++) p.push(await Remote.spawn(t, tb.bus, 2001 + i));
  return { bus: tb.bus, p };
}

async function recv(peer: Remote, what: string): Promise<Received> {
  return within(CALL_MS, peer.recv({ timeoutMs: 8000 }), what);
}

async function nothingQueued(t: ExecutionContext, peer: Remote, what: string): Promise<void> {
  t.is(await within(CALL_MS, peer.tryRecv(), what), 'undefined', `${what}: nothing more is queued`);
}

async function rejectsWith(t: ExecutionContext, p: Promise<unknown>, code: string, what: string): Promise<void> {
  const err = await t.throwsAsync(within(CALL_MS, p, what), undefined, what);
  t.true(err instanceof BusError, `${what}: a BusError (${String(err)})`);
  t.is((err as BusError | undefined)?.code as string, code, `${what}: ${err?.message}`);
}

/** Every uid's usage and every peer's query(), to compare before and after. */
async function snapshot(bus: Bus, peers: Remote[]): Promise<unknown> {
  const out: unknown[] = [];
  for (const p of peers) out.push(await bus.usage(p.uid), await p.query());
  return out;
}

// ---- node-release for the owner's own extra references ----------------------------------------

test('a handle the owner transferred to itself: releasing it gives one node-release; node and handle stay', async (t) => {
  const { bus, p: [a] } = await setup(t, 1);
  const n = await a.createNode();
  t.is(await bus.transferHandle(a.ticket, n, a.ticket), n, 'the owner\'s own id, one more reference');
  await a.releaseHandle(n);
  const m = await recv(a, 'node-release');
  t.is(m.type, 'node-release');
  t.is(m.destination, n);
  await nothingQueued(t, a, 'exactly one notification');
  // The owner keeps the node and its handle: it can still send to it, and cannot drop its last reference.
  await a.send(n, 'still mine');
  const d = await recv(a, 'data after the release');
  t.is(d.text, 'still mine');
  t.true(d.seq > m.seq, 'in the global order, after the release');
  await rejectsWith(t, a.releaseHandle(n), 'EBUSY', 'the owner\'s last reference of a live node');
  const q = await a.query();
  t.is(q.limits.handles - q.remaining.handles, 1, 'one handle reference charged: the owner\'s own');
});

test('a handle the owner sent to itself in a message: releasing it gives one node-release, after the message', async (t) => {
  const { p: [a] } = await setup(t, 1);
  const n = await a.createNode();
  await a.send(n, 'carrying my own node', { handles: [n] });
  const d = await recv(a, 'the message');
  t.deepEqual(d.handles, [n], 'the carried handle is the owner\'s own id');
  await a.releaseHandle(n);
  const m = await recv(a, 'node-release');
  t.is(m.type, 'node-release');
  t.is(m.destination, n);
  t.true(m.seq > d.seq, 'ordered after the message that carried the reference');
  await nothingQueued(t, a, 'exactly one notification');
});

test('with two extra references, node-release comes once, when the last of them is released', async (t) => {
  const { bus, p: [a] } = await setup(t, 1);
  const n = await a.createNode();
  await bus.transferHandle(a.ticket, n, a.ticket);
  await bus.transferHandle(a.ticket, n, a.ticket);
  await a.releaseHandle(n);
  await nothingQueued(t, a, 'one extra reference is still held');
  await a.releaseHandle(n);
  t.is((await recv(a, 'node-release')).type, 'node-release');
  await nothingQueued(t, a, 'exactly one notification');
  // And again: each time the extra references are all gone, one more notification.
  await bus.transferHandle(a.ticket, n, a.ticket);
  await a.releaseHandle(n);
  t.is((await recv(a, 'second node-release')).type, 'node-release');
  await nothingQueued(t, a, 'exactly one notification per last release');
});

/** `first()` leaves a reference besides the owner's own: nothing; `second()` drops the last one: one node-release. */
async function lastReleaseNotifies(t: ExecutionContext, owner: Remote, first: () => Promise<void>, second: () => Promise<void>,
  what: string): Promise<Received> {
  await first();
  await nothingQueued(t, owner, `${what}: a reference is still held`);
  await second();
  const m = await recv(owner, `${what}: node-release`);
  t.is(m.type, 'node-release');
  await nothingQueued(t, owner, `${what}: one notification`);
  return m;
}

test('other holders and the owner\'s extra references count together: node-release when the last of all goes', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [n, bN] = await nodeOf(bus, a, b);
  await bus.transferHandle(a.ticket, n, a.ticket);
  const first = await lastReleaseNotifies(t, a, () => a.releaseHandle(n), () => b.releaseHandle(bN), 'the owner\'s extra reference first');
  const bN2 = await bus.transferHandle(a.ticket, n, b.ticket);
  await bus.transferHandle(a.ticket, n, a.ticket);
  const second = await lastReleaseNotifies(t, a, () => b.releaseHandle(bN2), () => a.releaseHandle(n), 'the other holder first');
  t.true(second.seq > first.seq);
});

test('node-release for the owner\'s extra reference takes its place in the global order', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [n, bN] = await nodeOf(bus, a, b);
  await bus.transferHandle(a.ticket, n, a.ticket);
  await b.send(bN, 'before');
  await a.releaseHandle(n); // b still holds: nothing yet
  await b.releaseHandle(bN); // the last foreign reference: node-release now
  const got = [await recv(a, 'first'), await recv(a, 'second')];
  t.deepEqual(got.map((m) => m.type), ['data', 'node-release']);
  t.true(got[1].seq > got[0].seq, 'seq increases');
  // The owner takes another extra reference in a message it sends itself, and a later message follows the release.
  await a.send(n, 'carrier', { handles: [n] });
  await rejectsWith(t, a.releaseHandle(n), 'EBUSY', 'a reference still in flight is not the owner\'s yet');
  const carrier = await recv(a, 'carrier');
  await a.releaseHandle(n);
  await a.send(n, 'after');
  const seqs = [carrier, await recv(a, 'release'), await recv(a, 'after')];
  t.deepEqual(seqs.map((m) => m.type), ['data', 'node-release', 'data']);
  t.deepEqual(seqs.map((m) => m.text), ['carrier', '', 'after']);
  t.true(seqs[0].seq < seqs[1].seq && seqs[1].seq < seqs[2].seq, `seqs ${seqs.map((m) => m.seq).join(' < ')}`);
});

test('an unread node-release is withdrawn when the owner takes another extra reference', async (t) => {
  const { bus, p: [a] } = await setup(t, 1);
  const n = await a.createNode();
  await bus.transferHandle(a.ticket, n, a.ticket);
  await a.releaseHandle(n); // node-release queued, not read
  await bus.transferHandle(a.ticket, n, a.ticket); // the node is held again: withdrawn
  await nothingQueued(t, a, 'the withdrawn notification is skipped');
  await a.releaseHandle(n);
  t.is((await recv(a, 'the new node-release')).type, 'node-release');
  await nothingQueued(t, a, 'one notification');
});

test('a destroyed node gives no node-release when the owner drops its extra reference', async (t) => {
  const { bus, p: [a] } = await setup(t, 1);
  const n = await a.createNode();
  await bus.transferHandle(a.ticket, n, a.ticket);
  await a.destroyNodes([n]);
  t.is((await recv(a, 'node-destroy')).type, 'node-destroy');
  await a.releaseHandle(n);
  await nothingQueued(t, a, 'no node-release for a destroyed node');
  await a.releaseHandle(n);
  await rejectsWith(t, a.releaseHandle(n), 'ENXIO', 'every reference is gone');
});

// ---- the empty transaction -------------------------------------------------------------------

test('send([], data) is an empty transaction: it resolves, delivers nothing and charges nothing', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [, aB] = await nodeOf(bus, b, a);
  const before = await snapshot(bus, [a, b]);
  await within(CALL_MS, a.send([], 'to nobody'), 'send([])');
  await within(CALL_MS, a.send([], new Uint8Array(0)), 'send([], empty)');
  await within(CALL_MS, a.send([], 'with a handle', { handles: [aB] }), 'send([]) with a handle');
  t.deepEqual(await a.send([], 'partial', { partial: true }), { delivered: [], refused: [] }, 'partial: nothing to report');
  t.deepEqual(await snapshot(bus, [a, b]), before, 'nothing charged anywhere');
  await nothingQueued(t, a, 'sender');
  await nothingQueued(t, b, 'receiver');
  // It is validated like any send.
  await rejectsWith(t, a.send([], 'x', { handles: [aB + 100] }), 'ENXIO', 'an unknown handle');
  await rejectsWith(t, a.send([], new SharedArrayBuffer(8)), 'EINVAL', 'data that cannot be serialized');
  await rejectsWith(t, a.send([], 'x', { handles: [-1] }), 'EINVAL', 'a negative handle id');
  await rejectsWith(t, a.send([], 'x'.repeat((1 << 20) + 1)), 'EMSGSIZE', 'too large');
  t.deepEqual(await snapshot(bus, [a, b]), before, 'refusals change nothing');
  // And the peer goes on as before.
  await a.send(aB, 'after');
  t.is((await recv(b, 'after')).text, 'after');
  await nothingQueued(t, b, 'only that');
});

test('post([], data) is an empty transaction too: flush() reports nothing, and a bad handle is reported', async (t) => {
  const tb = await TestBus.start(t);
  const b = await Remote.spawn(t, tb.bus, 2002);
  const local = Peer.open(await tb.bus.createPeer({ uid: 2001 }));
  t.teardown(() => local.close().catch(() => undefined));
  const own = local.createNode();
  const before = await tb.bus.usage(2002);
  const senderBefore = await tb.bus.usage(2001);
  const id = local.post([], 'to nobody');
  t.true(id > 0, 'post([]) returns a request id');
  t.deepEqual(await within(CALL_MS, local.flush(), 'flush'), { rejected: [] });
  t.deepEqual(await tb.bus.usage(2002), before, 'nothing charged to the receiver');
  t.deepEqual(await tb.bus.usage(2001), senderBefore, 'nothing charged to the sender');
  const bad = local.post([], 'x', { handles: [own + 50] });
  const report = await within(CALL_MS, local.flush(), 'flush after a bad post');
  t.is(report.rejected.length, 1);
  t.is(report.rejected[0].id, bad);
  t.is(report.rejected[0].error.code, 'ENXIO');
  t.throws(() => local.post([], () => 7), { instanceOf: BusError, message: /data/ }, 'data that cannot be serialized throws at once');
  t.is(local.tryRecv(), undefined, 'nothing reached the sender\'s own node');
  t.is(await within(CALL_MS, b.tryRecv(), 'receiver'), 'undefined', 'nothing reached anyone');
  // A good post still goes through after the refused one (flush() resumed the stream).
  local.post(own, 'after');
  t.deepEqual(await within(CALL_MS, local.flush(), 'flush'), { rejected: [] });
  const m = local.tryRecv() ?? await within(CALL_MS, local.recv(), 'recv');
  t.is(m.text(), 'after');
  m.release();
});
