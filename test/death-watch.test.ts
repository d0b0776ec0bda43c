/*
 * The death watch is one channel per thread that opens peers, not one per ticket
 * (src/peer/watch.ts): the first Peer.open() of a bus in a thread sends the coordinator
 * one port, and every peer opened in that thread is cut off when that port closes. These
 * tests open many peers in one worker and check that its death disconnects every one of
 * them (reason: thread exit) and gives all their charges back, that a peer closed
 * normally in that thread (the first one, whose open sent the watch, included) leaves
 * the others connected, and that peers of two buses in one thread are each watched.
 * A ticket posted to a thread carries a port of its own until it is opened, so a thread
 * that dies holding it unopened still gets its peer cut off; a ticket opened where it was
 * minted never makes that port.
 */

import test, { type ExecutionContext } from 'ava';
import { Worker } from 'node:worker_threads';
import { Bus, Peer, type PeerTicket, type HandleId } from '../src/index.js';
import { heldPort } from '../src/ticket.js';
import { CTL_STATE, CTL_REASON, STATE_OPEN, STATE_DISCONNECTED, STATE_CLOSED, REASON_THREAD_EXIT } from '../shared/layout.js';
import { within } from './helpers/remote-peer.js';

const FIXTURE = new URL('./fixtures/many-peers.js', import.meta.url);
const WAIT = 10_000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const state = (t: PeerTicket) => Atomics.load(new Int32Array(t.ctlSab), CTL_STATE);
const reason = (t: PeerTicket) => Atomics.load(new Int32Array(t.ctlSab), CTL_REASON);

/** A worker that opens all `tickets`; resolves once it has. */
async function host(tickets: PeerTicket[]): Promise<{ worker: Worker; next: (type: string) => Promise<any> }> {
  const worker = new Worker(FIXTURE, { workerData: { tickets }, transferList: tickets.flatMap((t) => t.transfer) as never });
  const inbox: any[] = [];
  const waiting: Array<() => void> = [];
  worker.on('message', (m) => {
    inbox.push(m);
    for (const w of waiting.splice(0)) w();
  });
  const next = async (type: string): Promise<any> => {
    for (;;) {
      const at = inbox.findIndex((m) => m.type === type || m.type === 'threw');
      if (at >= 0) return inbox.splice(at, 1)[0];
      await new Promise<void>((r) => waiting.push(r));
    }
  };
  const ready = await within(WAIT, next('ready'), 'the worker opens its peers');
  if (ready.type !== 'ready') throw new Error(`the worker failed: ${JSON.stringify(ready)}`);
  return { worker, next };
}

/** Resolves once every ticket's state has left STATE_OPEN (polled; rejects after WAIT). */
async function allCutOff(tickets: PeerTicket[], what: string): Promise<void> {
  const deadline = performance.now() + WAIT;
  while (tickets.some((t) => state(t) === STATE_OPEN)) {
    if (performance.now() > deadline) throw new Error(`${what}: ${tickets.filter((t) => state(t) === STATE_OPEN).length} peers still open`);
    await sleep(5);
  }
}

/** A bus with a sender peer (uid 1) in this thread; everything is torn down after the test. */
async function scene(t: ExecutionContext): Promise<{ bus: Bus; sender: Peer; senderTicket: PeerTicket; workers: Worker[] }> {
  const bus = await Bus.start();
  const workers: Worker[] = [];
  let sender: Peer | undefined;
  t.teardown(async () => {
    for (const w of workers) await w.terminate();
    await sender?.close().catch(() => undefined);
    await bus.close().catch(() => undefined);
  });
  const senderTicket = await bus.createPeer({ uid: 1 });
  sender = Peer.open(senderTicket);
  return { bus, sender, senderTicket, workers };
}

/** A ticket per uid, each with a node whose handle the sender holds. */
async function minted(bus: Bus, senderTicket: PeerTicket, uids: number[]): Promise<{ tickets: PeerTicket[]; handles: HandleId[] }> {
  const tickets: PeerTicket[] = [];
  const handles: HandleId[] = [];
  for (const uid of uids) {
    const ticket = await bus.createPeer({ uid });
    handles.push(await bus.transferHandle(ticket, await bus.createNode(ticket), senderTicket));
    tickets.push(ticket);
  }
  return { tickets, handles };
}

test('40 peers opened in one worker, which is terminated: all are disconnected (thread exit) and their uids get everything back', async (t) => {
  const { bus, sender, senderTicket, workers } = await scene(t);
  const uids = [501, 502, 503, 504];
  const { tickets, handles } = await minted(bus, senderTicket, Array.from({ length: 40 }, (_, i) => uids[i % uids.length]!));
  const { worker } = await host(tickets);
  workers.push(worker);
  // Something queued to every one of them, charged to their uids with a share for uid 1.
  for (const h of handles) await sender.send(h, 'queued until the thread dies');
  for (const uid of uids) {
    const u = await bus.usage(uid);
    t.is(u.max.messages - u.remaining.messages, 10, `uid ${uid}: ten messages queued before the death`);
    t.truthy(u.shares[1], `uid ${uid}: uid 1 holds a share`);
  }
  await worker.terminate();
  await allCutOff(tickets, 'after terminate()');
  t.deepEqual(tickets.map(state), tickets.map(() => STATE_DISCONNECTED), 'every peer: disconnected');
  t.deepEqual(tickets.map(reason), tickets.map(() => REASON_THREAD_EXIT), 'every peer: reason thread exit');
  for (const uid of uids) {
    const u = await bus.usage(uid);
    t.deepEqual(u.remaining, u.max, `uid ${uid}: back at its maximum`);
    t.deepEqual(u.shares, {}, `uid ${uid}: no shares left`);
  }
  // The sender keeps its 40 handles (to nodes now gone) until it releases them; nothing else.
  const s = await bus.usage(1);
  t.deepEqual(s.remaining, { ...s.max, handles: s.max.handles - 40 }, 'uid 1: only its handles still charged');
  // The sender's handles now name dead nodes: a send to one is refused, not lost.
  await t.throwsAsync(sender.send(handles[0]!, 'to the dead'), { code: 'ESHUTDOWN' });
});

test('closing peers normally, the first one of the thread included, leaves its other peers connected until the thread dies', async (t) => {
  const { bus, sender, senderTicket, workers } = await scene(t);
  const { tickets, handles } = await minted(bus, senderTicket, [600, 601, 602]);
  const h = await host(tickets);
  const worker = h.worker;
  workers.push(worker);
  worker.postMessage({ op: 'close', i: 0 });
  t.is((await within(WAIT, h.next('closed'), 'peer 0 closes')).type, 'closed');
  t.is(state(tickets[0]!), STATE_CLOSED, 'peer 0: closed');
  await sleep(50);
  t.is(state(tickets[1]!), STATE_OPEN, 'peer 1: still open after peer 0 closed');
  await sender.send(handles[1]!, 'still here');
  worker.postMessage({ op: 'recv', i: 1 });
  t.deepEqual(await within(WAIT, h.next('got'), 'peer 1 receives'), { type: 'got', i: 1, text: 'still here' });
  await worker.terminate();
  await allCutOff(tickets.slice(1), 'after terminate()');
  t.is(state(tickets[0]!), STATE_CLOSED, 'peer 0: still closed (not re-disconnected)');
  t.deepEqual(tickets.slice(1).map(reason), [REASON_THREAD_EXIT, REASON_THREAD_EXIT], 'peers 1 and 2: thread exit');
  for (const uid of [600, 601, 602]) {
    const u = await bus.usage(uid);
    t.deepEqual(u.remaining, u.max, `uid ${uid}: back at its maximum`);
  }
});

test('peers of two buses opened in one thread are cut off by both coordinators when it dies', async (t) => {
  const buses = [await Bus.start(), await Bus.start()];
  let worker: Worker | undefined;
  t.teardown(async () => {
    await worker?.terminate();
    for (const b of buses) await b.close().catch(() => undefined);
  });
  const tickets: PeerTicket[] = [];
  for (const b of buses) for (let i = 0; i < 5; i++) tickets.push(await b.createPeer({ uid: 700 + i }));
  t.not(tickets[0]!.busThread, tickets[5]!.busThread, 'the two tickets name different coordinators');
  ({ worker } = await host(tickets));
  t.deepEqual(tickets.map(state), tickets.map(() => STATE_OPEN), 'all open while the thread lives');
  await worker.terminate();
  await allCutOff(tickets, 'after terminate()');
  t.deepEqual(tickets.map(reason), tickets.map(() => REASON_THREAD_EXIT), 'every peer of both buses: thread exit');
});

test('a ticket posted to a worker that exits without opening it: its peer is disconnected and its quota given back', async (t) => {
  const { bus, sender, senderTicket } = await scene(t);
  t.is(heldPort(senderTicket), null, 'a ticket opened where it was minted made no port');
  const { tickets: [ticket], handles: [h] } = await minted(bus, senderTicket, [800]);
  await sender.send(h!, 'never read');
  const worker = new Worker('process.exit(0)', { eval: true, workerData: { ticket }, transferList: ticket!.transfer as never });
  await new Promise((r) => worker.once('exit', r));
  await allCutOff([ticket!], 'after the worker exited');
  t.is(state(ticket!), STATE_DISCONNECTED, 'disconnected');
  t.is(reason(ticket!), REASON_THREAD_EXIT, 'reason: thread exit');
  const u = await bus.usage(800);
  t.deepEqual(u.remaining, u.max, 'uid 800: back at its maximum');
  t.deepEqual(u.shares, {}, 'uid 800: no shares left');
});

test('a ticket posted to a worker and opened there: closing its own port leaves the peer to the thread watch', async (t) => {
  const bus = await Bus.start();
  let worker: Worker | undefined;
  t.teardown(async () => {
    await worker?.terminate();
    await bus.close().catch(() => undefined);
  });
  const tickets = [await bus.createPeer({ uid: 900 }), await bus.createPeer({ uid: 901 })];
  ({ worker } = await host(tickets));
  // Peer.open() closed each ticket's port; the coordinator must not take that for a death.
  await sleep(100);
  t.deepEqual(tickets.map(state), [STATE_OPEN, STATE_OPEN], 'both still open after their ticket ports closed');
  await worker.terminate();
  await allCutOff(tickets, 'after terminate()');
  t.deepEqual(tickets.map(reason), [REASON_THREAD_EXIT, REASON_THREAD_EXIT], 'both: thread exit');
});
