/*
 * Wake-ups: the per-thread wake counter of shared/wait.ts (wakesSoFar, and the
 * coordinator's copy in the doorbell), the adaptive Spinner's slot rules, and the number
 * of futex wakes a request/reply loop between two real workers pays per round trip
 * (fixture: test/fixtures/wakes-peer.ts). Nothing here asserts a time.
 */
import test from 'ava';
import { Worker } from 'node:worker_threads';
import { setTimeout as delay } from 'node:timers/promises';
import { Bus } from '../src/index.js';
import { BELL_WAKES } from '../shared/layout.js';
import { SPIN_MAX_MS, Spinner, sleepWhileEqual, wakesSoFar } from '../shared/wait.js';
import { requestPair } from '../perf/pair.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Msg = { type: string; [k: string]: any };

const WORD = 0, FLAG = 16, SLOTS = 32;

test('wakesSoFar counts neither a wait that timed out nor one that found the word changed', (t) => {
  const i32 = new Int32Array(new SharedArrayBuffer(256));
  const before = wakesSoFar();
  t.is(sleepWhileEqual(i32, WORD, 0, FLAG, 1), 'timed-out');
  t.is(sleepWhileEqual(i32, WORD, 7, FLAG, 1), 'not-equal');
  t.is(wakesSoFar(), before);
});

test('a spinner spins only after a short wait: a long one turns its spinning off', (t) => {
  const s = new Spinner(null, 0, 1);
  t.is(s.budgetMs, 0);
  s.woke(performance.now());
  t.true(s.budgetMs > 0 && s.budgetMs <= SPIN_MAX_MS);
  s.woke(performance.now() - 1000 * SPIN_MAX_MS);
  t.is(s.budgetMs, 0);
});

test('a spinner takes a free slot while it spins and gives it back when the spin fails', (t) => {
  const i32 = new Int32Array(new SharedArrayBuffer(256));
  const s = new Spinner(i32, SLOTS, 1);
  // A budget set as woke() sets it after a short wait; woke() itself would read the clock,
  // and a thread preempted for 0.1 ms between two statements (a loaded CI box) gets none.
  s.budgetMs = SPIN_MAX_MS;
  t.false(s.spin(i32, WORD, 0));
  t.is(Atomics.load(i32, SLOTS), 0, 'the slot is free again');
  t.true(Atomics.load(i32, SLOTS + 1) > 0, 'the spin beat its slot');
});

test('a spinner does not spin in a slot another thread holds, and takes it once its holder has gone quiet', async (t) => {
  const i32 = new Int32Array(new SharedArrayBuffer(256));
  const other = 12345;
  Atomics.store(i32, SLOTS, other);
  const s = new Spinner(i32, SLOTS, 1);
  // Set directly, as in the test above: with no budget, spin() does not look at the slots.
  s.budgetMs = SPIN_MAX_MS;
  t.false(s.spin(i32, WORD, 0));
  t.is(Atomics.load(i32, SLOTS), other, 'a holder that may still be spinning keeps its slot');
  await delay(10); // longer than STALE_MS, with no beat from the holder
  s.budgetMs = SPIN_MAX_MS;
  t.false(s.spin(i32, WORD, 0));
  t.is(Atomics.load(i32, SLOTS), 0, 'the quiet holder was robbed; the robber gave the slot back when its spin failed');
});

/** A fixture worker whose messages can be awaited by type. */
function start(data: object, transfer: readonly unknown[]): { worker: Worker; next: (type: string) => Promise<Msg> } {
  const worker = new Worker(new URL('./fixtures/wakes-peer.js', import.meta.url), { workerData: data, transferList: transfer as never });
  const queue: Msg[] = [];
  let wake: (() => void) | null = null;
  let failure: Error | null = null;
  worker.on('message', (m: Msg) => { queue.push(m); wake?.(); });
  worker.on('error', (e) => { failure = e; wake?.(); });
  const next = async (type: string): Promise<Msg> => {
    const end = Date.now() + 60_000;
    for (;;) {
      const i = queue.findIndex((m) => m.type === type || m.type === 'failed');
      if (i >= 0) {
        const m = queue.splice(i, 1)[0];
        if (m.type === 'failed') throw new Error(m.message);
        return m;
      }
      if (failure) throw failure;
      if (Date.now() > end) throw new Error(`no '${type}' within 60 s`);
      await new Promise<void>((resolve) => { wake = resolve; setTimeout(resolve, 100); });
    }
  };
  return { worker, next };
}

test('a request/reply round trip costs at most four futex wakes over the client, the server and the coordinator', async (t) => {
  const bus = await Bus.start({ maxMessageBytes: 2048 });
  t.teardown(() => bus.close().catch(() => undefined));
  const { client, server, toServer, toClient } = await requestPair(bus);
  const doorbell = new Int32Array(client.doorbell);
  const trips = 2000;
  const s = start({ ticket: server, to: toClient, role: 'server', trips }, server.transfer);
  t.teardown(() => s.worker.terminate());
  await s.next('ready');
  const c = start({ ticket: client, to: toServer, role: 'client', trips }, client.transfer);
  t.teardown(() => c.worker.terminate());
  await c.next('ready');
  const first = await s.next('first');
  t.true(first.wakes >= 1, 'the server, asleep long before the first request, was woken and counted it');
  const coordinatorFrom = Atomics.load(doorbell, BELL_WAKES);
  const done = await c.next('done');
  const coordinator = Atomics.load(doorbell, BELL_WAKES) - coordinatorFrom;
  s.worker.postMessage('stop');
  const served = await s.next('done');
  t.is(done.trips, trips);
  t.is(served.trips, trips + 1);
  const perTrip = (done.wakes + served.wakes + coordinator) / trips;
  t.log(`wakes per round trip: client ${(done.wakes / trips).toFixed(2)}, server ${(served.wakes / trips).toFixed(2)}, coordinator ${(coordinator / trips).toFixed(2)}`);
  // The client waits for one hop, the server for one, the coordinator for two: one notify
  // each at most. More would mean a thread woken for nothing (a notify nobody needed).
  t.true(perTrip <= 4, `${perTrip.toFixed(2)} wakes per round trip`);
});
