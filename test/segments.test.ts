/*
 * The receive pool in segments made on demand (src/coordinator/pool.ts, src/peer/pool-map.ts):
 * a receiver starts with one buffer, and every segment its pool grows by is handed to
 * it before any descriptor names it. Real workers send and receive; each receiver keeps
 * every message (so that its pool has to grow rather than reuse slots) and checks each
 * payload against the pattern of its place in the sequence, which proves order and
 * content at once, then checks them all again at the end (zero-copy views stay valid).
 * The number of distinct buffers its views are in is the number of segments they used.
 *
 * Serial: the tests keep several workers busy, and the machine has two cores.
 */

import anyTest, { type TestFn } from 'ava';
import { Peer, type Message } from '../src/index.js';
import { TestBus, within } from './helpers/remote-peer.js';
import { Remote, nodeOf } from './fixtures/api-remote.js';
import { receiveSizes, type Checked } from './fixtures/segments-peer-lib.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../shared/layout.js';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
/** test/fixtures/late-segment-peer.ts sets flags[LET_GO] when the main thread may go on. */
const LET_GO = 0;

const test = anyTest.serial as TestFn;

const CALL_MS = 30_000;
const RECV_MS = 20_000;

/** Sizes across classes 1..5 (65 B to 2 KiB slices), a different one each time. */
const mixed = (n: number) => Array.from({ length: n }, (_, i) => 65 + ((i * 977) % 1980));

function receive(r: Remote, sizes: number[], seed: number, mode: 'async' | 'sync'): Promise<Checked> {
  return within(CALL_MS, r.call<Checked>('receiveSizes', sizes, seed, mode, RECV_MS), `receive ${sizes.length}`);
}

function send(s: Remote, to: number | number[], sizes: number[], seed: number): Promise<number> {
  return within(CALL_MS, s.call<number>('sendSizes', to, sizes, seed), `send ${sizes.length}`);
}

test('a receiver whose pool grows to many segments gets every message, in order and intact', async (t) => {
  const tb = await TestBus.start(t);
  const s = await Remote.spawn(t, tb.bus, 3101, 'segments-peer');
  const r = await Remote.spawn(t, tb.bus, 3102, 'segments-peer');
  const [, to] = await nodeOf(tb.bus, r, s);
  const sizes = mixed(3000);
  const [got, sent] = await Promise.all([receive(r, sizes, 1, 'async'), send(s, to, sizes, 1)]);
  t.is(sent, sizes.length);
  t.deepEqual(got.bad, [], 'every payload matched its place in the sequence');
  t.deepEqual(got.stale, [], 'every kept view still held its payload at the end');
  t.true(got.buffers >= 20, `3000 kept messages of 65 B - 2 KiB came from ${got.buffers} segments`);
  // Released, the slots are reused: a second round needs no new segment beyond those.
  t.is(await r.call<number>('releaseAll'), sizes.length);
  const again = await Promise.all([receive(r, sizes, 2, 'async'), send(s, to, sizes, 2)]);
  t.deepEqual([again[0].bad, again[0].stale], [[], []]);
  t.true(again[0].buffers <= got.buffers, `the second round used ${again[0].buffers} segments, the first ${got.buffers}`);
});

test('a large message after many small ones lands in a segment of its own, intact', async (t) => {
  const tb = await TestBus.start(t);
  const s = await Remote.spawn(t, tb.bus, 3111, 'segments-peer');
  const r = await Remote.spawn(t, tb.bus, 3112, 'segments-peer');
  const [, to] = await nodeOf(tb.bus, r, s);
  const sizes = [...Array.from({ length: 2000 }, (_, i) => 1 + (i % 64)), (1 << 20) - 64, 3, 200_000];
  const [got, sent] = await Promise.all([receive(r, sizes, 7, 'async'), send(s, to, sizes, 7)]);
  t.is(sent, sizes.length);
  t.deepEqual([got.bad, got.stale], [[], []]);
  // 2000 slices of 64 B: the first segment (in IN) and one more; then one each for the 1 MiB and the 200 KB message.
  t.is(got.buffers, 4, 'first segment, a second 64 B segment, one for the 1 MiB message, one for the 200 KB one');
});

for (const mode of ['sync', 'async'] as const) {
  test(`a receiver already waiting in ${mode === 'sync' ? 'recvSync()' : 'an async recv()'} maps each new segment as it comes`, async (t) => {
    const tb = await TestBus.start(t);
    const s = await Remote.spawn(t, tb.bus, 3121, 'segments-peer');
    const r = await Remote.spawn(t, tb.bus, 3122, 'segments-peer');
    const [, to] = await nodeOf(tb.bus, r, s);
    // The receiver is waiting before anything is sent; each batch below needs segments it has not seen.
    const sizes = [4000, ...mixed(600), 70_000, 300_000, 9000];
    const receiving = receive(r, sizes, 11, mode);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const [got, sent] = await Promise.all([receiving, send(s, to, sizes, 11)]);
    t.is(sent, sizes.length);
    t.deepEqual([got.bad, got.stale], [[], []]);
    t.true(got.buffers >= 8, `${got.buffers} segments`);
  });
}

test('a multicast reaches two receivers whose pools each grow, all of it at both', async (t) => {
  const tb = await TestBus.start(t);
  const s = await Remote.spawn(t, tb.bus, 3131, 'segments-peer');
  const r1 = await Remote.spawn(t, tb.bus, 3132, 'segments-peer');
  const r2 = await Remote.spawn(t, tb.bus, 3133, 'segments-peer');
  const [, to1] = await nodeOf(tb.bus, r1, s);
  const [, to2] = await nodeOf(tb.bus, r2, s);
  const sizes = mixed(1500);
  const [got1, got2, sent] = await Promise.all([
    receive(r1, sizes, 21, 'async'), receive(r2, sizes, 21, 'sync'), send(s, [to1, to2], sizes, 21),
  ]);
  t.is(sent, sizes.length);
  t.deepEqual([got1.bad, got1.stale, got2.bad, got2.stale], [[], [], [], []]);
  t.true(got1.buffers >= 10 && got2.buffers >= 10, `${got1.buffers} and ${got2.buffers} segments`);
});

test('a peer in the main thread maps new segments too, with recv() and with recvSync()', async (t) => {
  const tb = await TestBus.start(t);
  const s = await Remote.spawn(t, tb.bus, 3141, 'segments-peer');
  const ticket = await tb.bus.createPeer({ uid: 3142 });
  const main = Peer.open(ticket);
  const kept: Message[] = [];
  t.teardown(async () => {
    for (const m of kept) m.release();
    await main.close().catch(() => undefined);
  });
  const node = await main.createNode();
  const to = await tb.bus.transferHandle(ticket, node, s.ticket);
  const sizes = [...mixed(400), 150_000];
  // Async first: the sender runs in its worker while this thread awaits.
  const [got, sent] = await Promise.all([receiveSizes(main, sizes, 31, 'async', RECV_MS, kept), send(s, to, sizes, 31)]);
  t.is(sent, sizes.length);
  t.deepEqual([got.bad, got.stale], [[], []]);
  // Then blocking: the whole batch is sent (and accepted) first, so recvSync never waits on this thread's event loop.
  const sizes2 = [...mixed(400).reverse(), 600_000];
  t.is(await send(s, to, sizes2, 32), sizes2.length);
  const got2 = await receiveSizes(main, sizes2, 32, 'sync', RECV_MS, kept);
  t.deepEqual([got2.bad, got2.stale], [[], []]);
  t.true(got.buffers >= 5 && got2.buffers >= 5, `${got.buffers} and ${got2.buffers} segments`);
});

test('segments made while the receiver was not opened yet reach it when it opens (they wait for its thread)', async (t) => {
  const tb = await TestBus.start(t);
  const s = await Remote.spawn(t, tb.bus, 3143, 'segments-peer');
  // The receiver's ticket stays unopened while its queue fills: the coordinator knows no
  // thread to post its segments to, so they wait (src/coordinator/segment-mail.ts).
  const ticket = await tb.bus.createPeer({ uid: 3144 });
  const node = await tb.bus.createNode(ticket);
  const to = await tb.bus.transferHandle(ticket, node, s.ticket);
  const sizes = mixed(2000);
  t.is(await send(s, to, sizes, 11), sizes.length);
  const r = await Remote.open(t, ticket, 'segments-peer');
  const got = await receive(r, sizes, 11, 'sync');
  t.deepEqual([got.bad, got.stale], [[], []]);
  t.true(got.buffers >= 10, `2000 kept messages came from ${got.buffers} segments, all made before the receiver opened`);
});

test('a message whose pool segment is late blocks neither tryRecv() nor the event loop of an async recv(), and arrives once the segment does', async (t) => {
  const tb = await TestBus.start(t);
  const rx = await tb.bus.createPeer({ uid: 3161 });
  const tx = await tb.bus.createPeer({ uid: 3162 });
  const to = await tb.bus.transferHandle(rx, await tb.bus.createNode(rx), tx);
  const flags = new Int32Array(new SharedArrayBuffer(16));
  const sizes = mixed(400);
  const w = new Worker(new URL('./fixtures/late-segment-peer.js', import.meta.url), {
    workerData: { rx, tx, to, flags, sizes, seed: 41 }, transferList: [...rx.transfer, ...tx.transfer],
  });
  t.teardown(() => w.terminate());
  const report = once(w, 'message');
  // Block this (Node's main) thread until the worker lets it go: the worker's watch, which
  // Node routes through this thread, waits meanwhile, and so do the receiver's new segments.
  const blocked = Atomics.wait(flags, LET_GO, 0, 30_000);
  t.not(blocked, 'timed-out', 'the worker let the main thread go');
  const [r] = (await within(CALL_MS, report, 'the worker\'s report')) as [Record<string, unknown>];
  t.true(r.ok, String(r.error));
  t.true((r.beforeLetGo as number) < sizes.length, `${r.beforeLetGo} of ${sizes.length} messages came before a late segment`);
  t.is(r.receivedWhileLate, r.beforeLetGo, 'nothing past the late segment arrived while it was late');
  t.true(r.timerFiredWhileLate, 'a timer fired while recv() waited for the late segment: the thread\'s event loop kept running');
  t.is(r.received, sizes.length);
  t.deepEqual(r.bad, []);
});

test('two peers opened in one thread each get their own segments through the thread\'s one watch', async (t) => {
  const tb = await TestBus.start(t);
  const s = await Remote.spawn(t, tb.bus, 3151, 'segments-peer');
  const ta = await tb.bus.createPeer({ uid: 3152 });
  const tbb = await tb.bus.createPeer({ uid: 3153 });
  const a = Peer.open(ta);
  const b = Peer.open(tbb);
  const kept: Message[] = [];
  t.teardown(async () => {
    for (const m of kept) m.release();
    await Promise.allSettled([a.close(), b.close()]);
  });
  const toA = await tb.bus.transferHandle(ta, await a.createNode(), s.ticket);
  const toB = await tb.bus.transferHandle(tbb, await b.createNode(), s.ticket);
  const sizes = mixed(1500);
  // Both queues fill at once, so the letters of the two peers are interleaved on the port;
  // B reads all of its messages first, taking A's letters off the port and keeping them for A.
  await Promise.all([send(s, toA, sizes, 21), send(s, toB, sizes, 22)]);
  const gotB = await receiveSizes(b, sizes, 22, 'sync', RECV_MS, kept);
  const gotA = await receiveSizes(a, sizes, 21, 'sync', RECV_MS, kept);
  t.deepEqual([gotA.bad, gotA.stale, gotB.bad, gotB.stale], [[], [], [], []]);
  t.true(gotA.buffers >= 10 && gotB.buffers >= 10, `A used ${gotA.buffers} segments, B ${gotB.buffers}`);
});

test('sends of the largest size, each more than half the OUT ring, alternate with small ones and all arrive intact (padding records)', async (t) => {
  // The receiver keeps all it gets (about 5 MiB): under the default 16 MiB the half rule refuses (EDQUOT)
  // a sender that gets two or three largest messages ahead of the receiver, which a slow
  // receiver thread on a loaded machine allows. That race is not what this test is about.
  const tb = await TestBus.start(t, { users: { 3162: { bytes: 64 << 20 } } });
  const s = await Remote.spawn(t, tb.bus, 3161, 'segments-peer');
  const r = await Remote.spawn(t, tb.bus, 3162, 'segments-peer');
  const [, to] = await nodeOf(tb.bus, r, s);
  // The OUT ring holds one largest send (shared/layout.ts outRingBytes): after any small
  // record, the next large one can neither fit before the end nor follow a wrap marker,
  // so the sender pads the ring to its end first (shared/ring.ts).
  const largest = DEFAULT_MAX_MESSAGE_BYTES;
  const sizes = Array.from({ length: 5 }, (_, i) => [largest - 8 * i, 100 + i, 3000]).flat();
  const [got, sent] = await Promise.all([receive(r, sizes, 41, 'async'), send(s, to, sizes, 41)]);
  t.is(sent, sizes.length);
  t.deepEqual([got.bad, got.stale], [[], []]);
});
