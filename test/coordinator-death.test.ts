/*
 * Death of the coordinator thread (issue 10, point 4): an uncaught error in it, or
 * terminate(). Killed through coordinatorWorkerOf (src/bus.ts), an internal hook that
 * index.ts does not export. Then:
 *   - every pending promise in every peer settles with ESHUTDOWN (sends, queries, posts
 *     behind flush(), recv(), for-await, blocking createNode/releaseHandle);
 *   - recvSync() blocked with no timeout throws instead of blocking forever;
 *   - Peer.open() of a ticket minted before the death, and every bus.* call, fail with
 *     ESHUTDOWN, bus.close() too (after it has released everything), and a second close() again;
 *   - every peer worker exits by itself.
 * The time from the kill to each settlement is logged (the goal is under a second); the
 * test only bounds it generously, since the machine is shared.
 */

import test, { type ExecutionContext } from 'ava';
import { Worker } from 'node:worker_threads';
import { Bus, BusError, Peer, type PeerTicket } from '../src/index.js';
import { coordinatorWorkerOf } from '../src/bus.js';
import { within } from './helpers/remote-peer.js';
import type { DeathMode, Ended } from './fixtures/death-peer.js';

const WAIT = 10_000; // a hang guard, not a latency target: the measured latencies are logged

interface DeathPeer {
  mode: DeathMode;
  worker: Worker;
  ended: Promise<Ended>;
  exited: Promise<number>;
}

async function spawn(bus: Bus, uid: number, mode: DeathMode, to?: number, ticket?: PeerTicket): Promise<DeathPeer> {
  ticket ??= await bus.createPeer({ uid });
  const worker = new Worker(new URL('./fixtures/death-peer.js', import.meta.url), {
    workerData: { ticket, mode, to }, transferList: ticket.transfer as never,
  });
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => { ready = resolve; });
  const ended = new Promise<Ended>((resolve, reject) => {
    worker.on('message', (m) => {
      if (m.type === 'ready') ready();
      else if (m.type === 'ended') resolve(m as Ended);
    });
    worker.once('error', reject);
    void exited.then(() => reject(new Error(`${mode} worker exited without reporting`)));
  });
  ended.catch(() => undefined);
  await within(WAIT, isReady, `${mode} worker ready`);
  return { mode, worker, ended, exited };
}

async function expectShutdown(t: ExecutionContext, p: Promise<unknown> | (() => unknown), what: string): Promise<void> {
  let err: unknown = null;
  try {
    await within(WAIT, typeof p === 'function' ? Promise.resolve().then(p) : p, what);
  } catch (e) {
    err = e;
  }
  t.true(err instanceof BusError, `${what}: a BusError (${String(err)})`);
  t.is((err as BusError | null)?.code, 'ESHUTDOWN', `${what}: ESHUTDOWN`);
}

const death = test.macro({
  async exec(t, how: 'terminate' | 'throw') {
    const bus = await Bus.start({ userLimits: { messages: 4096 } });
    const workers: DeathPeer[] = [];
    t.teardown(async () => {
      await Promise.all(workers.map((w) => w.worker.terminate()));
      await bus.close().catch(() => undefined);
    });
    // A receiver that iterates, and senders into it: traffic flows when the coordinator dies.
    const sinkTicket = await bus.createPeer({ uid: 1 });
    const sinkNode = await bus.createNode(sinkTicket);
    const senders: PeerTicket[] = [];
    const handles: number[] = [];
    for (let i = 0; i < 2; i++) {
      const tk = await bus.createPeer({ uid: 10 + i });
      handles.push(await bus.transferHandle(sinkTicket, sinkNode, tk));
      senders.push(tk);
    }
    workers.push(await spawn(bus, 1, 'iterate', undefined, sinkTicket));
    workers.push(await spawn(bus, 10, 'send', handles[0], senders[0]));
    workers.push(await spawn(bus, 11, 'post', handles[1], senders[1]));
    for (const mode of ['recv', 'recvSync', 'sync'] as const) workers.push(await spawn(bus, 20, mode));
    // A peer in this thread with a pending recv(), and a ticket nobody opened yet.
    const local = Peer.open(await bus.createPeer({ uid: 30 }));
    const localRecv = local.recv();
    localRecv.catch(() => undefined);
    const unopened = await bus.createPeer({ uid: 31 });
    const keep = await bus.createPeer({ uid: 32 });
    // Let the traffic run for a moment, so that the kill lands in the middle of it.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const usage = await bus.usage(1);
    t.true(usage.max.messages > 0);

    const coordinator = coordinatorWorkerOf(bus);
    const gone = new Promise<number>((resolve) => coordinator.once('exit', resolve));
    const t0 = performance.timeOrigin + performance.now();
    if (how === 'terminate') void coordinator.terminate();
    else coordinator.postMessage({ id: -1, op: 'test-crash' });
    const code = await within(WAIT, gone, 'the coordinator thread exits');
    t.is(code, 1, `the coordinator ended abnormally (${how})`);

    const latencies: string[] = [];
    for (const w of workers) {
      const e = await within(WAIT, w.ended, `${w.mode}: the pending operation settles`);
      t.is(e.code, w.mode === 'iterate' ? 'none' : 'ESHUTDOWN', `${w.mode}: ended with ${e.code} (${e.message})`);
      t.false(e.isOpen, `${w.mode}: the peer reports itself closed`);
      if (w.mode === 'send' || w.mode === 'post') {
        t.true(e.settled >= 1, `${w.mode}: its pending promises settled with ESHUTDOWN (${e.settled})`);
        t.is(e.other, 0, `${w.mode}: no pending promise settled any other way after the death`);
      }
      latencies.push(`${w.mode} ${(e.at - t0).toFixed(0)} ms`);
    }
    await expectShutdown(t, localRecv, 'recv() in the owner thread');
    latencies.push(`local recv ${(performance.timeOrigin + performance.now() - t0).toFixed(0)} ms (upper bound)`);
    t.log(`${how}: settled after ${latencies.join(', ')}`);
    for (const w of workers) t.is(await within(WAIT, w.exited, `${w.mode}: the worker exits`), 0, `${w.mode}: exit code 0`);

    // Later calls: the owner's, a fresh Peer.open(), and the local peer's.
    await expectShutdown(t, () => Peer.open(unopened), 'Peer.open() of an unused ticket');
    await expectShutdown(t, bus.createPeer({ uid: 40 }), 'bus.createPeer');
    await expectShutdown(t, bus.createNode(keep), 'bus.createNode');
    await expectShutdown(t, bus.transferHandle(sinkTicket, sinkNode, keep), 'bus.transferHandle');
    await expectShutdown(t, bus.usage(1), 'bus.usage');
    await expectShutdown(t, local.send(1, 'x'), 'send from the local peer');
    await expectShutdown(t, () => local.createNode(), 'createNode on the local peer');
    await expectShutdown(t, () => local.tryRecv(), 'tryRecv on the local peer');
    await expectShutdown(t, () => local.recvSync(), 'recvSync on the local peer');
    await expectShutdown(t, bus.close(), 'bus.close() after the death');
    await expectShutdown(t, bus.close(), 'a second bus.close()');
  },
  title: (_, how) => `coordinator death by ${how}: pending promises settle with ESHUTDOWN, blocked waits return, workers exit`,
});

test.serial(death, 'terminate');
test.serial(death, 'throw');
