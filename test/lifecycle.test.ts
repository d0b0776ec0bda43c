/*
 * Peer death and bus shutdown (semantics.md 3, 5.2; api.md Bus.close, ticket ports).
 *
 * When a peer's thread dies (worker.terminate(), an uncaught throw, process.exit()) or
 * simply returns, the coordinator must notice (it is meant to within 100 ms; the waits
 * here are generous and the measured latency is only logged), and then:
 *   - every other holder gets node-destroy, under its own handle id, for every node the
 *     dead peer owned, in one transaction; later sends to them fail with ESHUTDOWN;
 *   - messages queued to the dead peer are dropped and give everything back: its uid's
 *     usage is at its maximum again, with no shares;
 *   - messages it sent that are still queued elsewhere are delivered all the same, before
 *     the node-destroy;
 *   - the owners of nodes it held handles to get node-release.
 * And bus.close(): blocked receivers reject with ESHUTDOWN, for-await loops end, the
 * coordinator thread exits, and every later call fails with ESHUTDOWN.
 *
 * Tests are serial: they measure detection latency, and one of them watches for the
 * coordinator's Worker being created (diagnostics_channel 'worker_threads').
 */
import test, { type ExecutionContext } from 'ava';
import dc from 'node:diagnostics_channel';
import { Worker } from 'node:worker_threads';
import { Bus, BusError, Peer, type PeerTicket } from '../src/index.js';
import {
  CTL_STATE, CTL_REASON, STATE_OPEN, STATE_DISCONNECTED, STATE_CLOSED, STATE_BUS_CLOSED, REASON_THREAD_EXIT,
} from '../shared/layout.js';
import { TestBus, RemotePeer, within, type MessageSummary } from './helpers/remote-peer.js';

const WAIT = 5000; // generous: the machine may be busy; measured latencies are logged, never asserted
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function ctl(ticket: PeerTicket): Int32Array {
  return new Int32Array(ticket.ctlSab);
}

/** Poll `cond` until it holds; throws after `ms` (and stops polling, so nothing is left running). */
async function pollUntil(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(0.5);
  }
}

/** Poll the peer's CTL_STATE (shared memory) until it leaves STATE_OPEN; returns ms since `since`. */
async function stateLeavesOpen(ticket: PeerTicket, since: number, what: string): Promise<number> {
  const c = ctl(ticket);
  await pollUntil(() => Atomics.load(c, CTL_STATE) !== STATE_OPEN, WAIT, what);
  return performance.now() - since;
}

async function expectCode(t: ExecutionContext, p: Promise<unknown>, code: string, what: string): Promise<void> {
  const err = await t.throwsAsync(within(WAIT, p, what), undefined, what);
  t.true(err instanceof BusError, `${what}: a BusError (${String(err)})`);
  t.is((err as BusError)?.code as string, code, `${what}: ${code}`);
}

async function usageIsWhole(t: ExecutionContext, bus: Bus, uid: number, what: string): Promise<void> {
  const u = await within(WAIT, bus.usage(uid), `usage(${uid})`);
  t.deepEqual(u.remaining, u.max, `${what}: uid ${uid} back at its maximum`);
  t.deepEqual(u.shares, {}, `${what}: uid ${uid} has no shares`);
}

/** Everything queued at a peer right now (bounded), released as received. */
async function drainAll(p: RemotePeer, expected: number, what: string): Promise<MessageSummary[]> {
  const got = await within(WAIT * 2, p.recvMany(expected, { timeoutMs: WAIT * 2 }), what);
  return got;
}

// ---- death of a peer's thread ----------------------------------------------------------------

type Death = 'terminate' | 'throw' | 'exit';

async function kill(p: RemotePeer, how: Death): Promise<void> {
  if (how === 'terminate') await p.terminate();
  else p.crash(how);
}

const deathTest = test.macro({
  async exec(t, how: Death) {
    const tb = await TestBus.start(t);
    const bus = tb.bus;
    const [a, b, c] = await Promise.all([tb.peer(100), tb.peer(200), tb.peer(300)]);
    // A owns three nodes: one created by the owner, two by A itself.
    const a1 = await bus.createNode(a.ticket);
    const a2 = await a.createNode();
    const a3 = await a.createNode();
    const bA1 = await bus.transferHandle(a.ticket, a1, b.ticket);
    const bA2 = await bus.transferHandle(a.ticket, a2, b.ticket);
    const cA1 = await bus.transferHandle(a.ticket, a1, c.ticket);
    const cA3 = await bus.transferHandle(a.ticket, a3, c.ticket);
    // A holds handles to nodes of B and C, and sends to them; B and C do not read yet.
    const [nB, aB] = await tb.node(b, a);
    const [nC, aC] = await tb.node(c, a);
    await a.send(aB, 'a->b 0');
    await a.send(aB, 'a->b 1');
    await a.send(aC, 'a->c 0');
    // Messages queued to A: B sends four, C two; A receives one and keeps it (not released).
    for (let i = 0; i < 3; i++) await b.send(bA1, `b->a1 ${i}`);
    await b.send(bA2, 'b->a2');
    await c.send(cA3, 'c->a3 0');
    await c.send(cA3, 'c->a3 1');
    const kept = await a.recv({ keep: true });
    t.is(kept.text, 'b->a1 0');
    const before = await bus.usage(100);
    t.deepEqual(Object.keys(before.shares).sort(), ['200', '300'], 'before: B and C have messages in flight to A');
    t.is(before.max.messages - before.remaining.messages, 6, 'before: five queued and one received at A');

    // Kill A's thread.
    const t0 = performance.now();
    let exitAt = 0;
    void a.exited.then(() => { exitAt = performance.now(); });
    await kill(a, how);
    const detected = await stateLeavesOpen(a.ticket, t0, `${how}: the coordinator notices`);
    const code = await within(WAIT, a.exited, `${how}: the worker is gone`);
    t.log(`${how}: coordinator marked the peer disconnected ${detected.toFixed(1)} ms after the kill`
      + `${exitAt > 0 ? ` (worker 'exit' seen by the test at ${(exitAt - t0).toFixed(1)} ms)` : ''}; exit code ${code}`);
    t.is(Atomics.load(ctl(a.ticket), CTL_STATE), STATE_DISCONNECTED, 'state: disconnected');
    t.is(Atomics.load(ctl(a.ticket), CTL_REASON), REASON_THREAD_EXIT, 'reason: thread exit');
    if (how === 'exit') t.is(code, 3, 'the worker ended through process.exit(3)');

    // B: A's two messages first, then node-destroy for both A nodes it holds (one transaction),
    // then node-release for its own node that A held.
    const bm = await drainAll(b, 5, 'B drains');
    t.deepEqual(bm.slice(0, 2).map((m) => [m.type, m.text, m.senderUid, m.destination]),
      [['data', 'a->b 0', 100, nB], ['data', 'a->b 1', 100, nB]], 'B still gets what A sent before dying');
    t.deepEqual(bm.slice(2, 4).map((m) => m.type), ['node-destroy', 'node-destroy']);
    t.deepEqual(bm.slice(2, 4).map((m) => m.destination).sort(), [bA1, bA2].sort(), 'B is told under its own ids');
    t.is(bm[2].seq, bm[3].seq, 'one transaction');
    t.deepEqual([bm[2].continue, bm[3].continue], [true, false], 'continue links them');
    t.true(bm[2].seq > bm[1].seq, 'after the messages A sent');
    t.deepEqual([bm[4].type, bm[4].destination], ['node-release', nB], 'B learns A no longer holds its node');
    t.is(await b.tryRecv(), null, 'nothing else at B');

    const cm = await drainAll(c, 4, 'C drains');
    t.deepEqual([cm[0].type, cm[0].text, cm[0].senderUid], ['data', 'a->c 0', 100]);
    t.deepEqual(cm.slice(1, 3).map((m) => m.type), ['node-destroy', 'node-destroy']);
    t.deepEqual(cm.slice(1, 3).map((m) => m.destination).sort(), [cA1, cA3].sort(), 'C is told under its own ids');
    t.is(cm[1].seq, bm[2].seq, 'the same transaction as at B');
    t.deepEqual([cm[3].type, cm[3].destination], ['node-release', nC]);
    t.is(await c.tryRecv(), null, 'nothing else at C');

    // Sends to the dead peer's nodes fail with ESHUTDOWN, multicast included (and deliver nothing).
    await expectCode(t, b.send(bA1, 'late'), 'ESHUTDOWN', 'B -> a1');
    await expectCode(t, b.send(bA2, 'late'), 'ESHUTDOWN', 'B -> a2');
    await expectCode(t, c.send(cA3, 'late'), 'ESHUTDOWN', 'C -> a3');
    await expectCode(t, c.send(cA1, 'late'), 'ESHUTDOWN', 'C -> a1');
    await expectCode(t, b.send([nB, bA2], 'late'), 'ESHUTDOWN', 'B multicast to its node and a2');
    t.is(await b.tryRecv(), null, 'the failed multicast delivered nothing');
    await expectCode(t, bus.createNode(a.ticket), 'ESHUTDOWN', 'owner createNode for the dead peer');
    await expectCode(t, bus.transferHandle(b.ticket, bA1, c.ticket), 'ESHUTDOWN', 'transfer of a dead node');

    // A's uid: everything queued to it dropped, its kept slice and handles freed.
    await usageIsWhole(t, bus, 100, 'after death');
    // B and C: messages and bytes whole once they have released what they received; they
    // still hold their handles to the destroyed nodes (and their own), until they release them.
    for (const [p, uid, dead] of [[b, 200, [bA1, bA2]], [c, 300, [cA1, cA3]]] as const) {
      const u = await bus.usage(uid);
      t.is(u.remaining.messages, u.max.messages, `uid ${uid}: no messages charged`);
      t.is(u.remaining.bytes, u.max.bytes, `uid ${uid}: no bytes charged`);
      t.deepEqual(u.shares, {}, `uid ${uid}: no shares`);
      t.is(u.max.handles - u.remaining.handles, 3, `uid ${uid}: its own node and two dead ones`);
      for (const h of dead) await within(WAIT, p.releaseHandle(h), 'release a dead handle');
      await expectCode(t, p.releaseHandle(dead[0]), 'ENXIO', 'a released handle is gone');
      const u2 = await bus.usage(uid);
      t.is(u2.max.handles - u2.remaining.handles, 1, `uid ${uid}: only its own node left`);
    }

    // The survivors carry on.
    const [, bC] = await tb.node(c, b);
    await within(WAIT, b.send(bC, 'still here'), 'B -> C');
    t.is((await within(WAIT, c.recv(), 'C recv')).text, 'still here');
  },
  title: (_provided, how: Death) => `a peer killed by ${how === 'terminate' ? 'worker.terminate()' : how === 'throw' ? 'an uncaught throw in its worker' : 'process.exit() in its worker'}: nodes destroyed, queue dropped, its sent messages kept`,
});

test.serial(deathTest, 'terminate');
test.serial(deathTest, 'throw');
test.serial(deathTest, 'exit');

test.serial('a peer whose worker simply returns is disconnected like a dead one', async (t) => {
  const tb = await TestBus.start(t);
  const bus = tb.bus;
  const b = await tb.peer(200);
  const nB = await b.createNode();
  const ticket = await bus.createPeer({ uid: 100 });
  const a1 = await bus.createNode(ticket);
  const aB = await bus.transferHandle(b.ticket, nB, ticket);
  const gate = new SharedArrayBuffer(4);
  const worker = new Worker(new URL('./fixtures/lifecycle-finish.js', import.meta.url), {
    workerData: { ticket, sendTo: aB, gate }, transferList: ticket.transfer as never,
  });
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  t.teardown(() => worker.terminate());
  worker.on('error', (e) => t.log(`finisher error: ${e}`));
  const { nodes } = await within(WAIT * 2, new Promise<{ nodes: number[] }>((r) => worker.once('message', r)), 'finisher ready');
  const held = [await bus.transferHandle(ticket, a1, b.ticket)];
  for (const n of nodes) held.push(await bus.transferHandle(ticket, n, b.ticket));
  await b.send(held[0], 'queued to the finisher');
  const queued = await bus.usage(100);
  t.is(queued.max.messages - queued.remaining.messages, 1, 'one message queued to A');
  t.deepEqual(Object.keys(queued.shares), ['200']);

  const t0 = performance.now();
  Atomics.store(new Int32Array(gate), 0, 1);
  Atomics.notify(new Int32Array(gate), 0);
  const code = await within(WAIT, exited, 'the finisher returns and its worker exits');
  t.is(code, 0, 'a normal exit');
  const detected = await stateLeavesOpen(ticket, t0, 'the coordinator notices');
  t.log(`worker returned: coordinator marked the peer disconnected ${detected.toFixed(1)} ms after the go`);
  t.is(Atomics.load(ctl(ticket), CTL_STATE), STATE_DISCONNECTED);
  t.is(Atomics.load(ctl(ticket), CTL_REASON), REASON_THREAD_EXIT);

  const bm = await drainAll(b, 6, 'B drains');
  t.deepEqual(bm.slice(0, 2).map((m) => [m.type, m.text]), [['data', 'finisher 0'], ['data', 'finisher 1']]);
  t.deepEqual(bm.slice(2, 5).map((m) => m.type), ['node-destroy', 'node-destroy', 'node-destroy'], 'all three of its nodes');
  t.deepEqual(bm.slice(2, 5).map((m) => m.destination).sort(), [...held].sort());
  t.deepEqual([bm[5].type, bm[5].destination], ['node-release', nB]);
  for (const h of held) await expectCode(t, b.send(h, 'late'), 'ESHUTDOWN', `send to dead node ${h}`);
  await usageIsWhole(t, bus, 100, 'after the finisher returned');
});

// ---- peer.close() ------------------------------------------------------------------------------

test.serial('peer.close() with messages still queued to it gives everything back', async (t) => {
  const tb = await TestBus.start(t);
  const bus = tb.bus;
  const [a, b, c] = await Promise.all([tb.peer(100), tb.peer(200), tb.peer(300)]);
  const [, bA, cA] = await tb.node(a, b, c);
  const [nB, aB] = await tb.node(b, a);
  for (let i = 0; i < 5; i++) await b.send(bA, `b ${i}`, { handles: [bA] });
  for (let i = 0; i < 3; i++) await c.send(cA, 'c'.repeat(100 + i));
  const kept = [await a.recv({ keep: true }), await a.recv({ keep: true })];
  t.deepEqual(kept.map((m) => m.text), ['b 0', 'b 1']);
  const before = await bus.usage(100);
  t.deepEqual(Object.keys(before.shares).sort(), ['200', '300'], 'before: in flight from B and C');

  await within(WAIT, a.close(), 'A closes');
  await stateLeavesOpen(a.ticket, 0, 'the coordinator marks A closed');
  t.is(Atomics.load(ctl(a.ticket), CTL_STATE), STATE_CLOSED);
  await usageIsWhole(t, bus, 100, 'after close');
  for (const uid of [200, 300]) {
    const u = await bus.usage(uid);
    t.deepEqual(u.shares, {}, `uid ${uid}: no shares`);
    t.is(u.remaining.messages, u.max.messages);
    t.is(u.remaining.bytes, u.max.bytes);
  }
  // Holders are told, A's handle to B's node is released, sends fail.
  const bm = await drainAll(b, 2, 'B drains');
  t.deepEqual(bm.map((m) => [m.type, m.destination]), [['node-destroy', bA], ['node-release', nB]]);
  const cm = await drainAll(c, 1, 'C drains');
  t.deepEqual(cm.map((m) => [m.type, m.destination]), [['node-destroy', cA]]);
  await expectCode(t, b.send(bA, 'late'), 'ESHUTDOWN', 'send to the closed peer');
  // And the closed peer itself: every later call fails with ESHUTDOWN.
  await expectCode(t, a.send(aB, 'x'), 'ESHUTDOWN', 'send after close');
  await expectCode(t, a.close(), 'ESHUTDOWN', 'close twice');
  await expectCode(t, a.createNode(), 'ESHUTDOWN', 'createNode after close');
  await expectCode(t, a.recv({ timeoutMs: WAIT }), 'ESHUTDOWN', 'recv after close');
  t.is(await a.releaseKept(), 2, 'releasing kept messages after close is harmless');
  await usageIsWhole(t, bus, 100, 'after releasing stale messages');
});

// ---- bus.close() -------------------------------------------------------------------------------

/** Start a TestBus and catch the coordinator's Worker as it is created. */
async function startWatched(t: ExecutionContext): Promise<{ tb: TestBus; coordinatorExit: Promise<number>; }> {
  const created: Worker[] = [];
  const onCreate = (m: unknown) => created.push((m as { worker: Worker }).worker);
  dc.subscribe('worker_threads', onCreate);
  let tb: TestBus;
  try {
    tb = await TestBus.start(t);
  } finally {
    dc.unsubscribe('worker_threads', onCreate);
  }
  t.is(created.length, 1, 'Bus.start created one thread: the coordinator');
  const coordinatorExit = new Promise<number>((resolve) => created[0].once('exit', resolve));
  return { tb, coordinatorExit };
}

test.serial('bus.close() while peers block in recv(): they reject with ESHUTDOWN, for-await ends, the coordinator exits', async (t) => {
  const { tb, coordinatorExit } = await startWatched(t);
  const bus = tb.bus;
  const [a, b] = await Promise.all([tb.peer(100), tb.peer(200)]);
  const [, aB] = await tb.node(b, a);
  // Two peers that only iterate.
  const iters: Array<{ worker: Worker; events: any[]; exited: Promise<number>; ticket: PeerTicket; handle: number }> = [];
  for (const uid of [300, 301]) {
    const ticket = await bus.createPeer({ uid });
    const n = await bus.createNode(ticket);
    const handle = await bus.transferHandle(ticket, n, a.ticket);
    const worker = new Worker(new URL('./fixtures/lifecycle-iterate.js', import.meta.url), {
      workerData: { ticket }, transferList: ticket.transfer as never,
    });
    t.teardown(() => worker.terminate());
    const events: any[] = [];
    worker.on('message', (m) => events.push(m));
    worker.on('error', (e) => events.push({ type: 'error', message: String(e) }));
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    iters.push({ worker, events, exited, ticket, handle });
  }
  const waitFor = async (ev: any[], pred: (e: any) => boolean, what: string) => {
    await pollUntil(() => ev.some(pred), WAIT, what);
    return ev.find(pred);
  };
  for (const it of iters) {
    await waitFor(it.events, (e) => e.type === 'ready', 'iterator ready');
    await a.send(it.handle, 'one');
    await waitFor(it.events, (e) => e.type === 'msg' && e.text === 'one', 'the loop receives');
  }
  // B blocks in recv(); A and the iterators are asleep too.
  const blocked = b.recv({ timeoutMs: 10_000 });
  blocked.catch(() => undefined);
  await sleep(50);

  const t0 = performance.now();
  await within(WAIT * 2, bus.close(), 'bus.close()');
  t.log(`bus.close() resolved after ${(performance.now() - t0).toFixed(1)} ms`);
  await expectCode(t, blocked, 'ESHUTDOWN', 'the blocked recv()');
  for (const it of iters) {
    const end = await waitFor(it.events, (e) => e.type === 'ended' || e.type === 'threw' || e.type === 'error', 'the for-await loop ends');
    t.deepEqual(end, { type: 'ended', count: 1 }, 'for-await ends normally after its one message');
    t.is(await within(WAIT, it.exited, 'the iterating worker exits by itself'), 0);
    t.is(Atomics.load(ctl(it.ticket), CTL_STATE), STATE_BUS_CLOSED);
  }
  t.is(await within(WAIT, coordinatorExit, 'the coordinator thread exits'), 0, 'the coordinator exits cleanly');
  await expectCode(t, a.send(aB, 'x'), 'ESHUTDOWN', 'a send after bus.close()');
});

test.serial('bus.close() twice: the second rejects with ESHUTDOWN (in sequence and concurrently)', async (t) => {
  const { tb, coordinatorExit } = await startWatched(t);
  await within(WAIT, tb.bus.close(), 'first close');
  await expectCode(t, tb.bus.close(), 'ESHUTDOWN', 'second close');
  t.is(await within(WAIT, coordinatorExit, 'coordinator exits'), 0);

  const bus2 = await Bus.start();
  t.teardown(() => bus2.close().catch(() => undefined));
  const [r1, r2] = await within(WAIT, Promise.allSettled([bus2.close(), bus2.close()]), 'two closes at once');
  t.is(r1.status, 'fulfilled', 'the first close succeeds');
  t.is(r2.status, 'rejected', 'the concurrent second close is refused');
  t.is(((r2 as PromiseRejectedResult).reason as BusError)?.code, 'ESHUTDOWN');
});

test.serial('every call after bus.close() fails with ESHUTDOWN, owner side and peer side', async (t) => {
  const tb = await TestBus.start(t);
  const bus = tb.bus;
  const [a, b] = await Promise.all([tb.peer(100), tb.peer(200)]);
  const [nB, aB] = await tb.node(b, a);
  const spare = await bus.createPeer({ uid: 300 });
  await within(WAIT, bus.close(), 'close');
  // Owner side.
  await expectCode(t, bus.createPeer({ uid: 1 }), 'ESHUTDOWN', 'createPeer');
  await expectCode(t, bus.createNode(a.ticket), 'ESHUTDOWN', 'createNode');
  await expectCode(t, bus.transferHandle(b.ticket, nB, a.ticket), 'ESHUTDOWN', 'transferHandle');
  await expectCode(t, bus.usage(100), 'ESHUTDOWN', 'usage');
  // A ticket minted before the close cannot be opened after it.
  const err = t.throws(() => Peer.open(spare));
  t.is((err as BusError)?.code, 'ESHUTDOWN', 'Peer.open of an earlier ticket');
  // Peer side, in the peers' workers.
  await expectCode(t, a.send(aB, 'x'), 'ESHUTDOWN', 'send');
  await expectCode(t, a.createNode(), 'ESHUTDOWN', 'peer createNode');
  await expectCode(t, a.query(), 'ESHUTDOWN', 'query');
  await expectCode(t, a.recv({ timeoutMs: WAIT }), 'ESHUTDOWN', 'recv');
  await expectCode(t, a.tryRecv(), 'ESHUTDOWN', 'tryRecv');
  await expectCode(t, a.releaseHandle(aB), 'ESHUTDOWN', 'releaseHandle');
  await expectCode(t, b.destroyNodes([nB]), 'ESHUTDOWN', 'destroyNodes');
  await expectCode(t, b.close(), 'ESHUTDOWN', 'peer close');
  t.false(await a.isOpen());
});

// ---- many deaths at once -------------------------------------------------------------------------

test.serial('20 peers crashing at once mid-traffic leave the bus working for the survivors', async (t) => {
  const tb = await TestBus.start(t);
  const bus = tb.bus;
  const limits = { messages: 512, bytes: 1 << 18 };
  const [s1, s2] = await Promise.all([tb.peer(1, limits), tb.peer(2, limits)]);
  const n1 = await s1.createNode();
  const n2 = await s2.createNode();
  const COUNT = 20;
  const uids = Array.from({ length: COUNT }, (_, i) => 1000 + (i % 7)); // several peers share a uid
  const ks = await Promise.all(uids.map((uid) => tb.peer(uid, limits)));
  const kNodes: number[] = [];     // S1's handle to each crasher's node
  const kToS1: number[] = [];      // each crasher's handle to S1's node
  for (const k of ks) {
    const kn = await k.createNode();
    kNodes.push(await bus.transferHandle(k.ticket, kn, s1.ticket));
    kToS1.push(await bus.transferHandle(s1.ticket, n1, k.ticket));
    await bus.transferHandle(s2.ticket, n2, k.ticket);
  }
  // Traffic both ways, not awaited: crashers flood S1, S1 floods every crasher.
  const kTraffic = ks.map((k, i) => k.sendMany(kToS1[i], 200, `k${i}-`).catch((e) => ({ ok: -1, error: String(e) })));
  const sTraffic = kNodes.map((h) => s1.sendMany(h, 50, 's1-'));
  await sleep(30);
  const t0 = performance.now();
  const exitAt = ks.map(() => 0);
  ks.forEach((k, i) => { void k.exited.then(() => { exitAt[i] = performance.now() - t0; }); });
  ks.forEach((k, i) => { void kill(k, (['terminate', 'throw', 'exit'] as const)[i % 3]); });
  const lat = await Promise.all(ks.map((k) => stateLeavesOpen(k.ticket, t0, 'every crasher is noticed')));
  await within(WAIT, Promise.all(ks.map((k) => k.exited)), 'every crasher worker is gone');
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1].toFixed(1);
  t.log(`20 crashes: noticed by the coordinator after median ${med(lat)} ms, max ${Math.max(...lat).toFixed(1)} ms;`
    + ` worker 'exit' seen by the test after median ${med(exitAt)} ms, max ${Math.max(...exitAt).toFixed(1)} ms`);
  await within(WAIT * 2, Promise.all(kTraffic), 'the crashers\' RPCs settle');
  const sent = await within(WAIT * 5, Promise.all(sTraffic), 'S1\'s sends settle (delivered or refused)');
  for (const r of sent) {
    if (r.error !== null) t.true(['ESHUTDOWN', 'EDQUOT'].includes(r.error.code), `S1's refused sends: ${r.error.code}`);
  }

  // S1 receives what the crashers got through, then a node-destroy for each of their nodes.
  const destroyed = new Set<number>();
  let data = 0;
  const late: string[] = [];
  await within(WAIT * 5, (async () => {
    while (destroyed.size < COUNT) {
      const m = await s1.recv({ timeoutMs: WAIT * 2 });
      if (m.type === 'data') {
        data++;
        // What crasher i sent was committed before its death: it arrives before its node-destroy.
        const i = Number(/^k(\d+)-/.exec(m.text)?.[1] ?? -1);
        if (i >= 0 && destroyed.has(kNodes[i])) late.push(m.text);
      } else if (m.type === 'node-destroy') {
        destroyed.add(m.destination);
      }
    }
  })(), 'S1 hears of every crasher\'s node');
  t.deepEqual(late, [], 'no crasher message arrives after that crasher\'s node-destroy');
  t.deepEqual([...destroyed].sort((x, y) => x - y), [...kNodes].sort((x, y) => x - y), 'node-destroy for every crasher node');
  t.log(`S1 received ${data} messages from the crashers before their node-destroys`);
  for (const h of kNodes.slice(0, 5)) await expectCode(t, s1.send(h, 'late'), 'ESHUTDOWN', 'send to a crashed node');

  // Survivors work both ways.
  const s1to2 = await bus.transferHandle(s2.ticket, n2, s1.ticket);
  const s2to1 = await bus.transferHandle(s1.ticket, n1, s2.ticket);
  await within(WAIT, s1.send(s1to2, 'hello s2'), 'S1 -> S2');
  await within(WAIT, s2.send(s2to1, 'hello s1'), 'S2 -> S1');
  const m2 = await within(WAIT, (async () => { for (;;) { const m = await s2.recv(); if (m.type === 'data') return m; } })(), 'S2 recv');
  t.is(m2.text, 'hello s2');
  let m1: MessageSummary;
  do m1 = await within(WAIT, s1.recv(), 'S1 recv'); while (m1.type !== 'data' || m1.senderUid !== 2);
  t.is(m1.text, 'hello s1');
  // Nothing of the crashers is left anywhere.
  for (const uid of new Set(uids)) await usageIsWhole(t, bus, uid, 'crashed uid');
  // S1 drained everything, so only what it still has queued (nothing) counts.
  while ((await s1.tryRecv()) !== null);
  const u1 = await bus.usage(1);
  t.deepEqual(u1.shares, {}, 'no shares left on S1');
  t.is(u1.remaining.messages, u1.max.messages);
  t.is(u1.remaining.bytes, u1.max.bytes);
});
