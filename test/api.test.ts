/*
 * The public API against the bus1 model (spec/semantics.md sections 1-3, spec/api.md),
 * in the spirit of bus1's own API tests (connect, transfer, notifications, destroy,
 * unicast, multicast, bad arguments, query). Every peer runs in its own worker
 * (test/fixtures/api-peer.ts); the test thread is the bus owner. Every wait is bounded:
 * receives time out in the worker, and calls that could hang are wrapped in within().
 *
 * Tests run serially: each starts a coordinator and several peer workers, and on two
 * cores a few dozen of them at once would only measure the scheduler.
 */

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { Bus, BusError, INVALID_HANDLE, Peer, type BusOptions } from '../src/index.js';
import { TestBus, within } from './helpers/remote-peer.js';
import { Remote, nodeOf, type Probe, type Received } from './fixtures/api-remote.js';
import { digest, pattern } from './fixtures/api-rpc.js';

const test = anyTest.serial as TestFn;

/** Bound for any single call that should answer promptly. */
const CALL_MS = 10_000;

/** A bus and `n` peers (uids 1001, 1002, ...) in api-peer workers. */
async function setup(t: ExecutionContext, n: number, opts?: BusOptions): Promise<{ bus: Bus; p: Remote[] }> {
  const tb = await TestBus.start(t, opts);
  const p: Remote[] = [];
  for (let i = 0; i < n; i++) p.push(await Remote.spawn(t, tb.bus, 1001 + i));
  return { bus: tb.bus, p };
}

/** `p` rejects (within CALL_MS) with a BusError of `code`. */
async function rejectsWith(t: ExecutionContext, p: Promise<unknown>, code: string, what: string): Promise<void> {
  const err = await t.throwsAsync(within(CALL_MS, p, what), undefined, what);
  t.true(err instanceof BusError, `${what}: expected a BusError, got ${String(err)}`);
  t.is<string | undefined, string>((err as BusError | undefined)?.code, code, `${what}: ${err?.message}`);
}

/** Nothing is queued at `peer`. */
async function nothingQueued(t: ExecutionContext, peer: Remote, what: string): Promise<void> {
  const got = await within(CALL_MS, peer.tryRecv(), what);
  t.is(got, 'undefined', `${what}: unexpected ${JSON.stringify(got)}`);
}

async function recv(peer: Remote, what: string, timeoutMs = 10_000): Promise<Received> {
  return within(timeoutMs + 2000, peer.recv({ timeoutMs }), what);
}

function probeFailedWith(t: ExecutionContext, r: Probe, code: string, what: string): void {
  t.not(r.threw, 'none', `${what}: succeeded`);
  t.true(r.isBusError, `${what}: not a BusError (${r.message})`);
  t.is(r.code, code, `${what}: ${r.message}`);
  t.true(r.message.length > 0, `${what}: the error says nothing`);
}

// ---- connect / disconnect ---------------------------------------------------------------

test('peer.close() disconnects the peer: it reports closed and every holder of its nodes gets node-destroy', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [, bHandle] = await nodeOf(bus, a, b);
  t.true(await a.isOpen());
  await within(CALL_MS, a.close(), 'close');
  t.false(await a.isOpen());
  const m = await recv(b, 'node-destroy at the holder');
  t.is(m.type, 'node-destroy');
  t.is(m.destination, bHandle);
  await rejectsWith(t, b.send(bHandle, 'late'), 'ESHUTDOWN', 'send to a closed peer\'s node');
});

test('after peer.close() a second close() and every later call fail with ESHUTDOWN', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [bNode, aHandle] = await nodeOf(bus, b, a);
  const own = await a.createNode();
  await a.close();
  const calls: Array<[string, unknown[]]> = [
    ['close', []],
    ['send', [aHandle, 'x']],
    ['send', [[aHandle, own], 'x']],
    ['recv', []],
    ['tryRecv', []],
    ['createNode', []],
    ['releaseHandle', [aHandle]],
    ['releaseHandle', [own]],
    ['query', []],
    ['destroyNodes', [[own]]],
  ];
  for (const [method, args] of calls) {
    probeFailedWith(t, await within(CALL_MS, a.probe(method, ...args), method), 'ESHUTDOWN', `${method}(${JSON.stringify(args)})`);
  }
  // a's handle went with it: b, the owner, learns that its node has no holder left.
  const rel = await recv(b, 'node-release after the holder closed');
  t.is(rel.type, 'node-release');
  t.is(rel.destination, bNode);
  // The other side is unaffected otherwise: b still receives on its node.
  t.true(await b.isOpen());
  await b.send(bNode, 'b still works');
  t.is((await recv(b, 'b')).text, 'b still works');
});

test('after bus.close() every bus call and every peer call fail with ESHUTDOWN, and nothing hangs', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [aNode, bHandle] = await nodeOf(bus, a, b);
  await b.call('startRecv'); // a receive that is waiting when the bus goes away
  t.is((await b.call('pendingRecv', 20)).state, 'pending');
  await within(CALL_MS, bus.close(), 'bus.close');

  // The waiting receive is woken with ESHUTDOWN.
  const pending = await within(CALL_MS, b.call('pendingRecv', 5000), 'pending recv');
  t.is(pending.state, 'rejected', 'a recv waiting at bus.close() must end');
  t.is(pending.code, 'ESHUTDOWN');

  await rejectsWith(t, bus.createPeer({ uid: 7 }), 'ESHUTDOWN', 'bus.createPeer');
  await rejectsWith(t, bus.createNode(a.ticket), 'ESHUTDOWN', 'bus.createNode');
  await rejectsWith(t, bus.transferHandle(a.ticket, aNode, b.ticket), 'ESHUTDOWN', 'bus.transferHandle');
  await rejectsWith(t, bus.usage(1001), 'ESHUTDOWN', 'bus.usage');
  await rejectsWith(t, bus.close(), 'ESHUTDOWN', 'second bus.close');

  for (const [peer, h] of [[a, aNode], [b, bHandle]] as const) {
    const calls: Array<[string, unknown[]]> = [
      ['send', [h, 'x']], ['recv', []], ['tryRecv', []], ['createNode', []], ['releaseHandle', [h]],
      ['query', []], ['destroyNodes', [[h]]], ['close', []],
    ];
    for (const [method, args] of calls) {
      probeFailedWith(t, await within(CALL_MS, peer.probe(method, ...args), `${method} after bus.close`), 'ESHUTDOWN', `${method} after bus.close`);
    }
    t.false(await peer.isOpen());
  }
});

test('a ticket can be opened only once (EINVAL), in the same thread or another one', async (t) => {
  const { bus, p: [a] } = await setup(t, 1);
  // a's worker opened its ticket; neither that worker nor this thread can open it again.
  const again = await a.call('openAgain');
  t.false(again.opened);
  t.is(again.code, 'EINVAL');
  t.true(again.isBusError);
  const err = t.throws(() => Peer.open(a.ticket));
  t.true(err instanceof BusError);
  t.is((err as BusError).code, 'EINVAL');
  // A fresh ticket opened in this thread: once yes, twice no.
  const ticket = await bus.createPeer({ uid: 5 });
  const peer = Peer.open(ticket);
  t.teardown(() => peer.close().catch(() => undefined));
  const err2 = t.throws(() => Peer.open(ticket));
  t.is((err2 as BusError).code, 'EINVAL');
  t.true(peer.isOpen, 'the failed second open must not disturb the first');
  const n = peer.createNode();
  await peer.send(n, 'still works');
  const m = await within(CALL_MS, peer.recv(), 'recv');
  t.is(m.text(), 'still works');
  m.release();
});

// ---- handle transfer --------------------------------------------------------------------

test('bus.transferHandle gives the receiver its own handle id, and that id reaches the node', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const aIds = [await a.createNode(), await a.createNode(), await a.createNode()];
  const target = aIds[2];
  const bId = await bus.transferHandle(a.ticket, target, b.ticket);
  t.true(Number.isInteger(bId) && bId > 0, `handle id ${bId}`);
  await b.send(bId, 'via b\'s own id');
  const m = await recv(a, 'message at the owner');
  t.is(m.text, 'via b\'s own id');
  t.is(m.destination, target, 'the owner sees its own id of the node');
  t.is(m.senderUid, b.uid);
  // a's ids mean nothing to b (except where they happen to be b's own id too).
  for (const x of aIds) {
    if (x !== bId) await rejectsWith(t, b.send(x, 'x'), 'ENXIO', `b sends to a's id ${x}`);
  }
  await nothingQueued(t, a, 'owner after ENXIO sends');
});

test('bus.transferHandle refuses an unknown handle (ENXIO) and a destroyed node (ESHUTDOWN)', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const n = await a.createNode();
  await rejectsWith(t, bus.transferHandle(a.ticket, n + 100, b.ticket), 'ENXIO', 'unknown handle');
  await a.destroyNodes([n]);
  await rejectsWith(t, bus.transferHandle(a.ticket, n, b.ticket), 'ESHUTDOWN', 'destroyed node');
  await nothingQueued(t, b, 'receiver of refused transfers');
});

test('receiving the same node twice gives the same id and the references add up', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const n = await a.createNode();
  const first = await bus.transferHandle(a.ticket, n, b.ticket);
  const second = await bus.transferHandle(a.ticket, n, b.ticket);
  t.is(second, first, 'one id per node and peer');
  await b.releaseHandle(first);
  await b.send(first, 'after one release');
  t.is((await recv(a, 'owner')).text, 'after one release');
  await b.releaseHandle(first);
  await rejectsWith(t, b.releaseHandle(first), 'ENXIO', 'third release of two references');
  await rejectsWith(t, b.send(first, 'x'), 'ENXIO', 'send after the last reference went');
  const rel = await recv(a, 'node-release');
  t.is(rel.type, 'node-release');
  await nothingQueued(t, a, 'owner');
});

test('a handle received in a message coalesces with a transferred one (same id, references add up)', async (t) => {
  const { bus, p: [a, b, c] } = await setup(t, 3);
  const [cNode, aToC, bToC] = await nodeOf(bus, c, a, b);
  const [, aToB] = await nodeOf(bus, b, a);
  await a.send(aToB, 'carry', { handles: [aToC] });
  const m = await recv(b, 'carrier');
  t.deepEqual(m.handles, [bToC], 'the node b already holds arrives under b\'s existing id');
  // Two references now: one release leaves it usable, the second drops it.
  await b.releaseHandle(bToC);
  await b.send(bToC, 'still held');
  const got = await recv(c, 'at c');
  t.is(got.text, 'still held');
  t.is(got.destination, cNode);
  await b.releaseHandle(bToC);
  await rejectsWith(t, b.releaseHandle(bToC), 'ENXIO', 'release past the references');
});

test('handles passed inside a message arrive as receiver-local ids that reach their nodes', async (t) => {
  const { bus, p: [a, b, c, d] } = await setup(t, 4);
  // Give b some handles first, so that its ids and a's ids are different numbers.
  await b.createNode();
  await b.createNode();
  const [cNode, aToC] = await nodeOf(bus, c, a);
  const [dNode, aToD] = await nodeOf(bus, d, a);
  const [, aToB] = await nodeOf(bus, b, a);
  await a.send(aToB, 'two handles', { handles: [aToC, aToD] });
  const m = await recv(b, 'carrier at b');
  t.is(m.handles.length, 2);
  const [bToC, bToD] = m.handles;
  t.not(bToC, bToD);
  for (const h of m.handles) t.true(Number.isInteger(h) && h > 0, `handle ${h}`);
  await b.send(bToC, 'to c');
  await b.send(bToD, 'to d');
  const atC = await recv(c, 'at c');
  const atD = await recv(d, 'at d');
  t.is(atC.text, 'to c');
  t.is(atC.destination, cNode);
  t.is(atC.senderUid, b.uid);
  t.is(atD.text, 'to d');
  t.is(atD.destination, dNode);
});

test('a handle received in a message can be used before the message is released', async (t) => {
  const { bus, p: [a, b, c] } = await setup(t, 3);
  const [cNode, aToC] = await nodeOf(bus, c, a);
  const [, aToB] = await nodeOf(bus, b, a);
  await a.send(aToB, 'carry', { handles: [aToC] });
  const m = await within(CALL_MS, b.recv({ keep: true }), 'carrier kept'); // received, slice not released
  t.is(m.handles.length, 1);
  const bToC = m.handles[0];
  await within(CALL_MS, b.send(bToC, 'used at once'), 'send with a just-received handle');
  const atC = await recv(c, 'at c');
  t.is(atC.text, 'used at once');
  t.is(atC.destination, cNode);
  t.is(await b.releaseKept(), 1);
});

test('a handle received in a message can be passed on and released before the message is released', async (t) => {
  const { bus, p: [a, b, c, d] } = await setup(t, 4);
  const [cNode, aToC] = await nodeOf(bus, c, a);
  const [, aToB] = await nodeOf(bus, b, a);
  await a.send(aToB, 'carry', { handles: [aToC] });
  const m = await within(CALL_MS, b.recv({ keep: true }), 'carrier kept'); // received, slice not released
  const bToC = m.handles[0];
  // The bus owner copies b's new handle to d; d's id reaches c's node.
  const dToC = await within(CALL_MS, bus.transferHandle(b.ticket, bToC, d.ticket), 'transfer of a just-received handle');
  await d.send(dToC, 'from d');
  t.is((await recv(c, 'at c')).destination, cNode);
  // b lets go of its only reference; the id is then gone.
  await within(CALL_MS, b.releaseHandle(bToC), 'release of a just-received handle');
  await rejectsWith(t, b.releaseHandle(bToC), 'ENXIO', 'second release of one reference');
  t.is(await b.releaseKept(), 1);
});

test('a handle received in a message can be released before the message is released', async (t) => {
  const { bus, p: [a, b, c] } = await setup(t, 3);
  const [, aToC] = await nodeOf(bus, c, a);
  const [, aToB] = await nodeOf(bus, b, a);
  await a.send(aToB, 'carry', { handles: [aToC] });
  const m = await within(CALL_MS, b.recv({ keep: true }), 'carrier kept'); // received, slice not released
  const bToC = m.handles[0];
  await within(CALL_MS, b.releaseHandle(bToC), 'release of a just-received handle');
  await rejectsWith(t, b.send(bToC, 'x'), 'ENXIO', 'send after releasing the only reference');
  await nothingQueued(t, c, 'a still holds c\'s node: no node-release yet');
  t.is(await b.releaseKept(), 1);
});

// ---- node-release -----------------------------------------------------------------------

test('the owner gets node-release with its own id each time the last holder lets go', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  await a.createNode(); // so that the node of interest is not a's id 1
  const n = await a.createNode();
  for (let round = 1; round <= 2; round++) {
    const h = await bus.transferHandle(a.ticket, n, b.ticket);
    await nothingQueued(t, a, `round ${round}: nothing before the release`);
    await b.releaseHandle(h);
    const m = await recv(a, `round ${round}: node-release`);
    t.is(m.type, 'node-release', `round ${round}`);
    t.is(m.destination, n, `round ${round}: the owner's id`);
    t.is(m.length, 0);
    t.deepEqual(m.handles, []);
    await nothingQueued(t, a, `round ${round}: exactly one node-release`);
  }
  await nothingQueued(t, b, 'the holder gets nothing');
});

test('a node-release is withdrawn when a new holder appears before the owner reads it', async (t) => {
  const { bus, p: [a, b, c] } = await setup(t, 3);
  const [n, bH] = await nodeOf(bus, a, b);
  await b.releaseHandle(bH); // node-release queued to a, unread
  const cH = await bus.transferHandle(a.ticket, n, c.ticket); // a new holder before a reads
  await nothingQueued(t, a, 'the node has a holder again');
  await c.releaseHandle(cH);
  const m = await recv(a, 'node-release for c letting go');
  t.is(m.type, 'node-release');
  t.is(m.destination, n);
  await nothingQueued(t, a, 'only one node-release');
});

// ---- node-destroy -----------------------------------------------------------------------

test('destroyNodes tells the owner and every holder, each with its own id, in one transaction', async (t) => {
  const { bus, p: [a, b, c] } = await setup(t, 3);
  await c.createNode(); await c.createNode(); await c.createNode(); // c's ids differ from b's
  const [n, bH, cH] = await nodeOf(bus, a, b, c);
  await a.destroyNodes([n]);
  const atA = await recv(a, 'owner');
  const atB = await recv(b, 'holder b');
  const atC = await recv(c, 'holder c');
  for (const [m, id, who] of [[atA, n, 'owner'], [atB, bH, 'b'], [atC, cH, 'c']] as const) {
    t.is(m.type, 'node-destroy', who);
    t.is(m.destination, id, `${who} gets its own id`);
    t.is(m.length, 0, who);
  }
  t.is(atB.seq, atA.seq, 'one transaction, one seq');
  t.is(atC.seq, atA.seq, 'one transaction, one seq');
  for (const p of [a, b, c]) await nothingQueued(t, p, 'exactly one node-destroy each');
});

test('destroyNodes of several nodes is one transaction: one seq, continue between one holder\'s notifications', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [n1, h1] = await nodeOf(bus, a, b);
  const [n2, h2] = await nodeOf(bus, a, b);
  await a.destroyNodes([n1, n2]);
  const atA = await within(CALL_MS, a.recvMany(2), 'owner');
  const atB = await within(CALL_MS, b.recvMany(2), 'holder');
  t.deepEqual(atA.map((m) => m.destination).sort(), [n1, n2].sort());
  t.deepEqual(atB.map((m) => m.destination).sort(), [h1, h2].sort());
  t.deepEqual([...atA, ...atB].map((m) => m.type), Array(4).fill('node-destroy'));
  t.is(new Set([...atA, ...atB].map((m) => m.seq)).size, 1, 'one seq for the whole transaction');
  t.deepEqual(atA.map((m) => m.continue), [true, false]);
  t.deepEqual(atB.map((m) => m.continue), [true, false]);
});

test('destroyNodes refuses EREMOTE, ESTALE, ENOTUNIQ and ENXIO, and a refused call destroys nothing', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [n1, bH1] = await nodeOf(bus, a, b);
  const [n2, bH2] = await nodeOf(bus, a, b);
  const unknown = Math.max(n1, n2) + 1000;
  await rejectsWith(t, b.destroyNodes([bH1]), 'EREMOTE', 'a holder destroys the owner\'s node');
  await rejectsWith(t, a.destroyNodes([n1, n1]), 'ENOTUNIQ', 'the same node twice');
  await rejectsWith(t, a.destroyNodes([unknown]), 'ENXIO', 'unknown handle');
  await rejectsWith(t, a.destroyNodes([n1, unknown]), 'ENXIO', 'one good, one unknown');
  // Nothing was destroyed by the refused calls.
  await nothingQueued(t, a, 'owner after refused destroys');
  await nothingQueued(t, b, 'holder after refused destroys');
  await b.send(bH1, 'n1 alive');
  t.is((await recv(a, 'n1 alive')).text, 'n1 alive');

  await a.destroyNodes([n1]);
  t.is((await recv(a, 'node-destroy')).type, 'node-destroy');
  t.is((await recv(b, 'node-destroy')).type, 'node-destroy');
  await rejectsWith(t, a.destroyNodes([n1]), 'ESTALE', 'already destroyed');
  await rejectsWith(t, a.destroyNodes([n2, n1]), 'ESTALE', 'live node with a destroyed one');
  // n2 survived the refused transaction.
  await nothingQueued(t, a, 'n2 not destroyed');
  await b.send(bH2, 'n2 alive');
  t.is((await recv(a, 'n2 alive')).text, 'n2 alive');
});

test('sends to a destroyed node fail with ESHUTDOWN for holders and the owner', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [n, bH] = await nodeOf(bus, a, b);
  await a.destroyNodes([n]);
  await recv(a, 'owner node-destroy');
  await recv(b, 'holder node-destroy');
  await rejectsWith(t, b.send(bH, 'x'), 'ESHUTDOWN', 'holder sends to a destroyed node');
  await rejectsWith(t, a.send(n, 'x'), 'ESHUTDOWN', 'owner sends to its destroyed node');
  await nothingQueued(t, a, 'owner');
  // The holder's id stays valid for releasing (exactly once).
  await b.releaseHandle(bH);
  await rejectsWith(t, b.releaseHandle(bH), 'ENXIO', 'second release');
});

test('releasing the owner\'s only reference to a live node fails with EBUSY and succeeds after destroy', async (t) => {
  const { p: [a] } = await setup(t, 1);
  const n = await a.createNode();
  await rejectsWith(t, a.releaseHandle(n), 'EBUSY', 'owner releases its live node');
  await a.send(n, 'still alive'); // the refusal changed nothing
  t.is((await recv(a, 'self')).text, 'still alive');
  await a.destroyNodes([n]);
  t.is((await recv(a, 'node-destroy')).type, 'node-destroy');
  await within(CALL_MS, a.releaseHandle(n), 'release after destroy');
  await rejectsWith(t, a.releaseHandle(n), 'ENXIO', 'release of a dropped handle');
});

// ---- unicast ------------------------------------------------------------------------------

test('a peer can send to its own node', async (t) => {
  const { p: [a] } = await setup(t, 1);
  const n = await a.createNode();
  await a.send(n, 'to myself');
  const m = await recv(a, 'self');
  t.is(m.type, 'data');
  t.is(m.text, 'to myself');
  t.is(m.destination, n);
  t.is(m.senderUid, a.uid);
  t.false(m.continue);
  t.deepEqual(m.handles, []);
  await nothingQueued(t, a, 'exactly one');
});

test('a remote unicast arrives with payload, sender uid, the receiver\'s id and a seq', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  await b.createNode();
  const [n, aH] = await nodeOf(bus, b, a);
  const text = 'héllo ✓ 😀 \u0000 end';
  await a.send(aH, text);
  const m = await recv(b, 'remote');
  t.is(m.type, 'data');
  t.is(m.text, text);
  t.is(m.length, Buffer.byteLength(text));
  t.is(m.destination, n);
  t.is(m.senderUid, a.uid);
  t.true(Number.isFinite(m.seq) && m.seq > 0, `seq ${m.seq}`);
  t.false(m.continue);
  await nothingQueued(t, a, 'the sender gets nothing');
});

test('empty payloads (\'\' and an empty Uint8Array) arrive with length 0', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [n, aH] = await nodeOf(bus, b, a);
  await a.send(aH, '');
  await a.send(aH, new Uint8Array(0));
  await a.send(aH, new Uint8Array(8).subarray(8)); // empty view with a non-zero offset
  const own = await b.createNode();
  await b.send(own, new Uint8Array(0));
  const got = await within(CALL_MS, b.recvMany(4), 'four empty messages');
  for (const m of got) {
    t.is(m.type, 'data');
    t.is(m.length, 0);
    t.is(m.text, '');
    t.true(m.isUint8Array);
  }
  t.deepEqual(got.map((m) => m.destination), [n, n, n, own]);
});

const SIZES = [0, 1, 3, 4, 7, 8, 63, 64, 65, 511, 512, 513, 4096, 100_000];

test('binary payloads arrive byte for byte, remote and to self, at sizes from 0 to 100000', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [bNode, aH] = await nodeOf(bus, b, a);
  const aOwn = await a.createNode();
  // Everything is sent before anything is received, so that slices of every size share the pool.
  for (const [i, size] of SIZES.entries()) {
    for (const [to, seed] of [[aH, 1 + i], [aOwn, 101 + i]] as const) {
      const sum = await within(CALL_MS, a.call('sendPattern', to, size, seed), `send ${size}`);
      t.is(sum, digest(pattern(size, seed)));
    }
  }
  const atB = await within(CALL_MS, b.recvMany(SIZES.length, { keep: true }), 'remote payloads');
  const atA = await within(CALL_MS, a.recvMany(SIZES.length, { keep: true }), 'payloads to self');
  for (const [i, size] of SIZES.entries()) {
    for (const [m, seed, where, dest] of [[atB[i], 1 + i, 'remote', bNode], [atA[i], 101 + i, 'self', aOwn]] as const) {
      const expected = pattern(size, seed);
      t.is(m.length, size, `${where} ${size}: length`);
      t.is(m.sha256, digest(expected), `${where} ${size}: bytes differ`);
      if (size <= 64) t.deepEqual(m.bytes, Array.from(expected), `${where} ${size}`);
      t.is(m.destination, dest);
    }
  }
  t.is(await b.releaseKept(), SIZES.length);
  t.is(await a.releaseKept(), SIZES.length);
});

test('a received payload stays intact while later messages arrive into the same pool', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [, aH] = await nodeOf(bus, b, a);
  // Keep (do not release) each message while the next ones are written next to it.
  const sums: string[] = [];
  for (let i = 0; i < 40; i++) sums.push(await a.call('sendPattern', aH, 1 + ((i * 37) % 300), 500 + i));
  const got = await within(CALL_MS, b.recvMany(40, { keep: true }), 'kept');
  t.deepEqual(got.map((m) => m.sha256), sums);
  t.is(await b.releaseKept(), 40);
});

// ---- multicast ----------------------------------------------------------------------------

test('a multicast to two nodes of one peer delivers to both, continue on the first only, one seq', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [b1, a1] = await nodeOf(bus, b, a);
  const [b2, a2] = await nodeOf(bus, b, a);
  await a.send([a1, a2], 'both');
  const [m1, m2] = await within(CALL_MS, b.recvMany(2), 'two deliveries');
  t.deepEqual([m1.destination, m2.destination].sort(), [b1, b2].sort());
  t.is(m1.text, 'both');
  t.is(m2.text, 'both');
  t.true(m1.continue, 'first of the transaction\'s messages to this peer: continue');
  t.false(m2.continue, 'last one: no continue');
  t.is(m1.seq, m2.seq);
  await nothingQueued(t, b, 'exactly two');
  // A later unicast is a transaction of its own.
  await a.send(a1, 'single');
  const m3 = await recv(b, 'unicast');
  t.false(m3.continue);
  t.true(m3.seq > m2.seq);
});

test('a multicast to nodes of different peers gives every receiver the same seq', async (t) => {
  const { bus, p: [a, b, c, d] } = await setup(t, 4);
  const [bN, aB] = await nodeOf(bus, b, a);
  const [bN2, aB2] = await nodeOf(bus, b, a);
  const [cN, aC] = await nodeOf(bus, c, a);
  const [dN, aD] = await nodeOf(bus, d, a);
  await a.send([aC, aB, aD, aB2], 'everyone');
  const atB = await within(CALL_MS, b.recvMany(2), 'b');
  const atC = await recv(c, 'c');
  const atD = await recv(d, 'd');
  t.deepEqual(atB.map((m) => m.destination).sort(), [bN, bN2].sort());
  t.deepEqual(atB.map((m) => m.continue), [true, false]);
  t.is(atC.destination, cN);
  t.is(atD.destination, dN);
  t.false(atC.continue);
  t.false(atD.continue);
  const seqs = new Set([...atB, atC, atD].map((m) => m.seq));
  t.is(seqs.size, 1, `one seq everywhere, got ${[...seqs]}`);
  for (const m of [...atB, atC, atD]) {
    t.is(m.text, 'everyone');
    t.is(m.senderUid, a.uid);
  }
  for (const p of [a, b, c, d]) await nothingQueued(t, p, 'nothing more');
});

test('a multicast with one bad destination delivers to nobody', async (t) => {
  const { bus, p: [a, b, c, d] } = await setup(t, 4);
  const [, aB] = await nodeOf(bus, b, a);
  const [cN, aC] = await nodeOf(bus, c, a);
  const [, aD] = await nodeOf(bus, d, a);
  const unknown = Math.max(aB, aC, aD) + 100;
  await rejectsWith(t, a.send([aB, unknown, aC], 'x'), 'ENXIO', 'unknown handle in the middle');
  await rejectsWith(t, a.send([aB, aC, unknown], 'x'), 'ENXIO', 'unknown handle last');
  await c.destroyNodes([cN]);
  await recv(c, 'c node-destroy');
  await recv(a, 'a node-destroy');
  await rejectsWith(t, a.send([aB, aC], 'x'), 'ESHUTDOWN', 'destroyed node last');
  await rejectsWith(t, a.send([aC, aB], 'x'), 'ESHUTDOWN', 'destroyed node first');
  await d.close();
  await recv(a, 'a node-destroy for d\'s node');
  await rejectsWith(t, a.send([aB, aD], 'x'), 'ESHUTDOWN', 'node of a closed peer');
  await nothingQueued(t, b, 'b got none of the refused multicasts');
  await nothingQueued(t, c, 'c got none');
  await a.send([aB], 'good');
  const m = await recv(b, 'b');
  t.is(m.text, 'good');
  await nothingQueued(t, b, 'only the good one');
});

test('a message carrying its own destination\'s handle gives the receiver its own id for its own node', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  await a.createNode(); await a.createNode(); // a's ids differ from b's
  await b.createNode();
  const [bN, aB] = await nodeOf(bus, b, a);
  t.not(aB, bN);
  await a.send(aB, 'self-reference', { handles: [aB] });
  const m = await recv(b, 'b');
  t.is(m.destination, bN);
  t.deepEqual(m.handles, [bN], 'the owner\'s own id of its own node');
  await b.send(m.handles[0], 'loop');
  t.is((await recv(b, 'b to itself')).destination, bN);
  // The carried reference added to the owner's: one release is fine, the last is refused.
  await b.releaseHandle(bN);
  await rejectsWith(t, b.releaseHandle(bN), 'EBUSY', 'last owner reference of a live node');
});

test('a handle to a destroyed node arrives as INVALID_HANDLE', async (t) => {
  const { bus, p: [a, b, c] } = await setup(t, 3);
  const [cN, aC] = await nodeOf(bus, c, a);
  const [, aB] = await nodeOf(bus, b, a);
  await c.destroyNodes([cN]);
  await recv(a, 'node-destroy at a');
  await a.send(aB, 'dead handle', { handles: [aC] });
  const m = await recv(b, 'b');
  t.deepEqual(m.handles, [INVALID_HANDLE]);
});

// ---- bad arguments ------------------------------------------------------------------------

/** Snapshot of what a refused send must leave untouched. */
async function state(bus: Bus, peers: Remote[]): Promise<unknown> {
  const out: unknown[] = [];
  for (const p of peers) out.push(await bus.usage(p.uid), await p.query());
  return out;
}

/** `p` is refused with `code` (as a rejected promise, never a synchronous throw) and changes nothing. */
async function refusedCleanly(t: ExecutionContext, bus: Bus, a: Remote, b: Remote, aH: number,
  args: unknown[], code: string, what: string): Promise<void> {
  const before = await state(bus, [a, b]);
  const r = await within(CALL_MS, a.probe('send', ...args), what);
  probeFailedWith(t, r, code, what);
  t.is(r.threw, 'async', `${what}: send must return a rejected promise, not throw`);
  t.deepEqual(await state(bus, [a, b]), before, `${what}: accounting changed`);
  await nothingQueued(t, b, `${what}: receiver`);
  // The peer still works, and the receiver gets just this.
  await a.send(aH, `ok after ${what}`);
  const m = await recv(b, `after ${what}`);
  t.is(m.text, `ok after ${what}`);
  await nothingQueued(t, b, `${what}: nothing extra`);
}

test('duplicate destinations are refused with ENOTUNIQ and change nothing', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [, aH] = await nodeOf(bus, b, a);
  const [, aH2] = await nodeOf(bus, b, a);
  await refusedCleanly(t, bus, a, b, aH, [[aH, aH], 'dup'], 'ENOTUNIQ', '[h, h]');
  await refusedCleanly(t, bus, a, b, aH, [[aH, aH2, aH], 'dup'], 'ENOTUNIQ', '[h, h2, h]');
});

test('a payload larger than maxMessageBytes is refused with EMSGSIZE and changes nothing', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2, { maxMessageBytes: 1024 });
  const [, aH] = await nodeOf(bus, b, a);
  await refusedCleanly(t, bus, a, b, aH, [aH, new Uint8Array(1025)], 'EMSGSIZE', '1025 bytes');
  await refusedCleanly(t, bus, a, b, aH, [aH, 'x'.repeat(1025)], 'EMSGSIZE', '1025-char string');
  await refusedCleanly(t, bus, a, b, aH, [aH, 'é'.repeat(513)], 'EMSGSIZE', '513 chars, 1026 UTF-8 bytes');
  await refusedCleanly(t, bus, a, b, aH, [aH, new Uint8Array(1 << 20)], 'EMSGSIZE', '1 MiB');
  // Exactly the maximum is fine.
  const sum = await a.call('sendPattern', aH, 1024, 9);
  const m = await recv(b, '1024 bytes');
  t.is(m.length, 1024);
  t.is(m.sha256, sum);
  await a.send(aH, 'y'.repeat(1024));
  t.is((await recv(b, '1024-char string')).length, 1024);
});

test('arguments of the wrong type are refused with EINVAL and change nothing', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [, aH] = await nodeOf(bus, b, a);
  const cases: Array<[string, unknown[]]> = [
    // Data of any structured-cloneable kind is a value now (test/everyday-values.test.ts has the ones refused).
    ['destination a string', [String(aH), 'x']],
    ['destination a non-numeric string', ['node', 'x']],
    ['destination negative', [-aH, 'x']],
    ['destination NaN', [NaN, 'x']],
    ['destination a fraction', [aH + 0.5, 'x']],
    ['destination Infinity', [Infinity, 'x']],
    ['destination an object', [{ id: aH }, 'x']],
    ['destination null', [null, 'x']],
    ['a string among destinations', [[aH, 'x'], 'x']],
    ['a negative destination among good ones', [[aH, -1], 'x']],
    ['NaN among destinations', [[NaN], 'x']],
    ['handles a number', [aH, 'x', { handles: aH }]],
    ['handles a string', [aH, 'x', { handles: 'h' }]],
    ['handles an object', [aH, 'x', { handles: { 0: aH } }]],
    ['a string among handles', [aH, 'x', { handles: [aH, 'h'] }]],
    ['a negative handle', [aH, 'x', { handles: [-1] }]],
    ['a NaN handle', [aH, 'x', { handles: [NaN] }]],
  ];
  for (const [what, args] of cases) await refusedCleanly(t, bus, a, b, aH, args, 'EINVAL', what);
});

test('an empty destination array with a bad argument is refused and changes nothing (send([]) itself: conformance.test.ts)', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [, aH] = await nodeOf(bus, b, a);
  await refusedCleanly(t, bus, a, b, aH, [[], new SharedArrayBuffer(8)], 'EINVAL', '[] with data that cannot be serialized');
  await refusedCleanly(t, bus, a, b, aH, [[], 'x', { handles: [aH + 100] }], 'ENXIO', '[] with an unknown handle');
});

test('an unknown handle in opts.handles is refused with ENXIO and changes nothing', async (t) => {
  const { bus, p: [a, b, c] } = await setup(t, 3);
  const [, aH] = await nodeOf(bus, b, a);
  const [, aC] = await nodeOf(bus, c, a);
  const unknown = Math.max(aH, aC) + 100;
  await refusedCleanly(t, bus, a, b, aH, [aH, 'x', { handles: [unknown] }], 'ENXIO', 'unknown handle');
  await refusedCleanly(t, bus, a, b, aH, [aH, 'x', { handles: [aC, unknown] }], 'ENXIO', 'good then unknown handle');
  // b got no handle to c's node out of the refused sends.
  t.deepEqual((await bus.usage(b.uid)).remaining.handles, (await bus.usage(b.uid)).max.handles - 1);
});

// ---- query, tryRecv, iteration, abort ----------------------------------------------------

test('query() returns the peer\'s limits and what remains, following charges and releases', async (t) => {
  const tb = await TestBus.start(t);
  const limits = { messages: 100, handles: 50, bytes: 65_536 };
  const a = await Remote.spawn(t, tb.bus, 1001);
  const b = await Remote.spawn(t, tb.bus, 1002, 'api-peer', limits);
  const q0 = await b.query();
  t.deepEqual(q0.limits, limits);
  t.deepEqual(q0.remaining, limits, 'nothing used yet');
  const [, aH] = await nodeOf(tb.bus, b, a);
  const q1 = await b.query();
  t.deepEqual(q1.remaining, { ...limits, handles: limits.handles - 1 }, 'a node costs its owner one handle');
  await a.send(aH, 'x'.repeat(100));
  const q2 = await b.query();
  t.is(q2.remaining.messages, limits.messages - 1, 'a queued message is charged to the receiver');
  t.true(q2.remaining.bytes <= limits.bytes - 100, `bytes ${q2.remaining.bytes}`);
  t.is(q2.remaining.handles, limits.handles - 1);
  await b.recv({ keep: true });
  t.deepEqual((await b.query()).remaining, q2.remaining, 'received but not released: still charged');
  await b.releaseKept();
  t.deepEqual((await b.query()).remaining, q1.remaining, 'released: given back');
  t.deepEqual((await b.query()).limits, limits);
});

test('tryRecv returns undefined when nothing is queued', async (t) => {
  const { p: [a] } = await setup(t, 1);
  await nothingQueued(t, a, 'fresh peer');
  const n = await a.createNode();
  await a.send(n, 'one');
  const m = await a.tryRecv();
  t.is((m as Received).text, 'one');
  await nothingQueued(t, a, 'after taking the only message');
});

test('for-await over a peer yields every message in order and ends when the peer is closed', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [, aH] = await nodeOf(bus, b, a);
  await b.call('startIterating');
  for (let i = 0; i < 5; i++) await a.send(aH, `m${i}`);
  // close() drops whatever is still queued, so let the loop take all five first.
  const seen = await within(CALL_MS, b.call('iteration', 5000, 5), 'five messages iterated');
  t.false(seen.ended, 'the loop must not end while the peer is open');
  await b.close();
  const it = await within(CALL_MS, b.call('iteration', 5000), 'iteration');
  t.true(it.ended, 'the loop must end when the peer is closed');
  t.is(it.error, null, 'ends without throwing');
  t.deepEqual(it.messages.map((m: Received) => m.text), ['m0', 'm1', 'm2', 'm3', 'm4']);
});

test('for-await over a peer ends when the bus is closed', async (t) => {
  const { bus, p: [b] } = await setup(t, 1);
  const n = await b.createNode();
  await b.call('startIterating');
  await b.send(n, 'before');
  const early = await within(CALL_MS, b.call('iteration', 5000, 1), 'first message iterated');
  t.false(early.ended, 'still iterating while the bus is up');
  t.is(early.messages.length, 1);
  await bus.close();
  const it = await within(CALL_MS, b.call('iteration', 5000), 'iteration');
  t.true(it.ended, 'the loop must end when the bus is closed');
  t.is(it.error, null);
  t.deepEqual(it.messages.map((m: Received) => m.text), ['before']);
});

test('recv({ signal }) rejects with the abort reason when aborted, and no message is lost', async (t) => {
  const { bus, p: [a, b] } = await setup(t, 2);
  const [, aH] = await nodeOf(bus, b, a);
  const later = await within(CALL_MS, b.call('recvAborted', 50), 'aborted while waiting');
  t.is(later.state, 'rejected');
  t.true(later.isReason, `rejects with signal.reason, got ${later.message}`);
  const before = await within(CALL_MS, b.call('recvAborted', -1), 'aborted before the call');
  t.is(before.state, 'rejected');
  t.true(before.isReason, `rejects with signal.reason, got ${before.message}`);
  // The aborted receives took nothing: the next message is still delivered, once.
  await a.send(aH, 'after the aborts');
  t.is((await recv(b, 'after aborts')).text, 'after the aborts');
  await nothingQueued(t, b, 'exactly one');
  // A signal that is never aborted does not get in the way.
  await a.send(aH, 'with a quiet signal');
  const quiet = await within(CALL_MS, b.call('recvAborted', 60_000), 'recv with an unaborted signal');
  t.is(quiet.state, 'resolved');
  t.is(quiet.value.text, 'with a quiet signal');
});
