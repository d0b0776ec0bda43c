/*
 * shared/wait.ts: timeouts, results, sleeping flags, the async form's keep-alive timer, and
 * the sleeping-flag protocol between two real threads (fixture: test/fixtures/ring-wait.ts).
 */
import test, { type ExecutionContext } from 'ava';
import { Worker } from 'node:worker_threads';
import { setTimeout as delay } from 'node:timers/promises';
import {
  MAX_SLEEP_MS, canBlock, sleepWhileEqual, sleepWhileEqualAsync, spinWhileEqual,
} from '../shared/wait.js';
import type { WaitFixtureData } from './fixtures/ring-wait.js';

// Same indices as test/fixtures/ring-wait.ts (not imported: that module runs as a worker).
const WORD = 0;
const FLAG = 16;
const FLAG_B = 32;

type FixtureData = WaitFixtureData; // a type-only import: the fixture module itself is not run here

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Msg = { type: string; [k: string]: any };

/** A fixture worker whose messages can be awaited one by one, each with a time limit. */
class Fixture {
  private readonly queue: Msg[] = [];
  private wake: (() => void) | null = null;
  exitCode: number | null = null;
  error: Error | null = null;
  readonly exited: Promise<number>;

  constructor(t: ExecutionContext, data: FixtureData) {
    const worker = new Worker(new URL('./fixtures/ring-wait.js', import.meta.url), { workerData: data });
    t.teardown(() => worker.terminate());
    worker.on('message', (m: Msg) => { this.queue.push(m); this.wake?.(); });
    worker.on('error', (e) => { this.error = e; this.wake?.(); });
    this.exited = new Promise((resolve) => {
      worker.on('exit', (code) => { this.exitCode = code; this.wake?.(); resolve(code); });
    });
  }

  /** The next message, or an error if the worker exits first or nothing comes within `ms`. */
  async next(ms: number): Promise<Msg> {
    const end = Date.now() + ms;
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.error) throw this.error;
      if (this.exitCode !== null) throw new Error(`the worker exited (code ${this.exitCode}) without a message`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no message within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = null;
    }
  }
}

function words(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(256));
}

/** Poll (with a limit) until i32[index] === value. */
async function until(i32: Int32Array, index: number, value: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Atomics.load(i32, index) !== value) {
    if (Date.now() > end) return false;
    await delay(1);
  }
  return true;
}

async function exitWithin(f: Fixture, ms: number): Promise<number | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    f.exited,
    new Promise<'still running'>((resolve) => { timer = setTimeout(() => resolve('still running'), ms); }),
  ]);
  clearTimeout(timer);
  return r;
}

function timeoutCount(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

// ---- spin --------------------------------------------------------------------------------

test('spinWhileEqual reports a changed word and gives up after its loads when none comes', (t) => {
  const i32 = words();
  i32[WORD] = 5;
  t.true(spinWhileEqual(i32, WORD, 4, 1));
  t.false(spinWhileEqual(i32, WORD, 5, 1000));
  t.false(spinWhileEqual(i32, WORD, 5, 0));
});

// ---- blocking sleep ------------------------------------------------------------------------

test('sleepWhileEqual returns timed-out once its timeout has passed, with the flag cleared', (t) => {
  const i32 = words();
  const t0 = performance.now();
  t.is(sleepWhileEqual(i32, WORD, 0, FLAG, 30), 'timed-out');
  t.true(performance.now() - t0 >= 25, 'it slept about as long as asked');
  t.is(Atomics.load(i32, FLAG), 0);
  t.is(sleepWhileEqual(i32, WORD, 0, FLAG, -5), 'timed-out', 'a negative timeout does not sleep');
  t.is(sleepWhileEqual(i32, WORD, 0, FLAG, 0), 'timed-out');
  t.is(Atomics.load(i32, FLAG), 0);
});

test('sleepWhileEqual returns not-equal at once when the word already differs, and clears the flag', (t) => {
  const i32 = words();
  i32[WORD] = 1;
  i32[FLAG] = 9;
  t.is(sleepWhileEqual(i32, WORD, 0, FLAG, 60_000), 'not-equal');
  t.is(Atomics.load(i32, FLAG), 0);
  t.is(Atomics.load(i32, WORD), 1, 'the word is not touched');
});

test('sleepWhileEqual announces the sleeper through its flag, wakes with ok on notify, then clears the flag', async (t) => {
  const i32 = words();
  const ROUNDS = 6;
  const f = new Fixture(t, { mode: 'sync', sab: i32.buffer as SharedArrayBuffer, timeoutMs: MAX_SLEEP_MS, rounds: ROUNDS });
  let woke = 0;
  for (let k = 0; k < ROUNDS; k++) {
    t.true(await until(i32, FLAG, 1, 5000), `round ${k}: the sleeper raised its flag`);
    await delay(30); // let it get into Atomics.wait
    Atomics.store(i32, WORD, k + 1);
    const woken = Atomics.notify(i32, WORD);
    const m = await f.next(5000);
    // If the notify found it asleep the wait says ok; if it had not gone to sleep yet, it
    // must have seen the new word instead. Either way the flag is down afterwards.
    t.is(m.result, woken === 1 ? 'ok' : 'not-equal', `round ${k}`);
    t.is(m.flag, 0, `round ${k}: flag cleared after waking`);
    if (woken === 1) woke++;
  }
  t.true(woke > 0, 'at least one round was a real sleep ended by notify');
  t.is(await exitWithin(f, 5000), 0);
});

test('sleepWhileEqual caps an infinite timeout at MAX_SLEEP_MS', async (t) => {
  const i32 = words();
  const f = new Fixture(t, { mode: 'sync', sab: i32.buffer as SharedArrayBuffer, timeoutMs: Infinity });
  const m = await f.next(MAX_SLEEP_MS + 9000);
  t.is(m.result, 'timed-out');
  t.true(m.elapsed >= MAX_SLEEP_MS - 20, `slept ${m.elapsed} ms`);
  t.is(m.flag, 0);
});

test('sleepWhileEqual does not sleep forever on a NaN timeout', async (t) => {
  const i32 = words();
  const f = new Fixture(t, { mode: 'sync', sab: i32.buffer as SharedArrayBuffer, timeoutMs: NaN });
  const m = await f.next(MAX_SLEEP_MS + 4000);
  t.is(m.result, 'timed-out');
  t.is(m.flag, 0);
});

// ---- event-loop sleep -------------------------------------------------------------------------

test('sleepWhileEqualAsync keeps its worker alive while pending, wakes with ok, and clears flag and timer', async (t) => {
  const i32 = words();
  const f = new Fixture(t, { mode: 'async', sab: i32.buffer as SharedArrayBuffer, timeoutMs: MAX_SLEEP_MS });
  const pending = await f.next(10_000);
  t.is(pending.type, 'pending');
  t.true(pending.async, 'the word was equal, so the wait is pending');
  t.is(pending.flag, 1, 'the flag is raised while the wait is pending');
  t.is(pending.timers, 1, 'one ref\'d timer holds the event loop');
  // Its only pending work is the wait: without the timer it would exit now.
  t.is(await exitWithin(f, 200), 'still running');
  t.is(Atomics.load(i32, FLAG), 1);
  Atomics.store(i32, WORD, 1);
  t.is(Atomics.notify(i32, WORD), 1, 'the async waiter was registered on the word');
  const m = await f.next(5000);
  t.is(m.result, 'ok');
  t.is(m.flag, 0, 'flag cleared after waking');
  t.is(m.timers, 0, 'timer cleared after waking');
  t.is(await exitWithin(f, 5000), 0, 'and then the worker exits on its own');
});

test('sleepWhileEqualAsync keeps its worker alive until its timeout, then reports timed-out and clears flag and timer', async (t) => {
  const i32 = words();
  const f = new Fixture(t, { mode: 'async', sab: i32.buffer as SharedArrayBuffer, timeoutMs: 60 });
  t.is((await f.next(10_000)).type, 'pending');
  const m = await f.next(5000);
  t.is(m.result, 'timed-out');
  t.is(m.flag, 0);
  t.is(m.timers, 0);
  t.is(await exitWithin(f, 5000), 0);
});

test('sleepWhileEqualAsync keeps its worker alive however late the thread gets back to its event loop', async (t) => {
  // A keep-alive with a deadline of its own (a timer with a margin over the wait's
  // timeout) loses this race: the wait's own timeout is armed only when the loop runs again.
  const i32 = words();
  const f = new Fixture(t, { mode: 'async-busy', sab: i32.buffer as SharedArrayBuffer, timeoutMs: 200, busyMs: 400 });
  const m = await f.next(10_000);
  t.is(m.result, 'timed-out', 'the wait ended by its own timeout, in a worker still running');
  t.is(m.flag, 0);
  t.is(m.timers, 0, 'and then holds nothing');
  t.is(await exitWithin(f, 5000), 0);
});

test('sleepWhileEqualAsync does not leave a NaN-timeout wait pending forever', async (t) => {
  const i32 = words();
  const f = new Fixture(t, { mode: 'async', sab: i32.buffer as SharedArrayBuffer, timeoutMs: NaN });
  const first = await f.next(10_000);
  // Either it resolves at once or it is pending with a timer; in both cases a result must come.
  const m = first.type === 'result' ? first : await f.next(MAX_SLEEP_MS + 4000);
  t.is(m.result, 'timed-out');
  t.is(m.flag, 0);
  t.is(m.timers, 0);
});

test('control: a bare Atomics.waitAsync lets its worker exit before it resolves', async (t) => {
  // The premise of the keep-alive timer: without it, the worker above would exit.
  const i32 = words();
  const f = new Fixture(t, { mode: 'bare-async', sab: i32.buffer as SharedArrayBuffer, timeoutMs: MAX_SLEEP_MS });
  const pending = await f.next(10_000);
  t.true(pending.async);
  t.is(await exitWithin(f, MAX_SLEEP_MS / 2), 0, 'it exited before its wait could end');
  await t.throwsAsync(f.next(10), { message: /exited/ }, 'and never reported a result');
});

test('sleepWhileEqualAsync returns not-equal synchronously, without a timer, when the word already differs', (t) => {
  const i32 = words();
  i32[WORD] = 3;
  i32[FLAG] = 9;
  const before = timeoutCount();
  const r = sleepWhileEqualAsync(i32, WORD, 0, FLAG, 60_000);
  t.is(r, 'not-equal');
  t.is(timeoutCount(), before, 'no timer left behind');
  t.is(Atomics.load(i32, FLAG), 0);
});

test('sleepWhileEqualAsync with flag index -1 touches no flag and still wakes on notify', async (t) => {
  const i32 = words();
  i32.fill(7);
  i32[WORD] = 0;
  const before = timeoutCount();
  const r = sleepWhileEqualAsync(i32, WORD, 0, -1, 5000);
  t.true(r instanceof Promise);
  t.is(timeoutCount(), before + 1, 'a keep-alive timer while pending');
  t.true(i32.every((v, i) => i === WORD || v === 7), 'no flag raised');
  t.is(Atomics.notify(i32, WORD), 1);
  t.is(await r, 'ok');
  t.true(i32.every((v, i) => i === WORD || v === 7), 'no flag written');
});

// ---- the sleeping-flag protocol between two threads --------------------------------------------

async function pingpong(t: ExecutionContext, rounds: number, timeoutMs: number, notify: boolean): Promise<Msg[]> {
  const i32 = words();
  const sab = i32.buffer as SharedArrayBuffer;
  const a = new Fixture(t, { mode: 'pingpong', sab, timeoutMs, rounds, parity: 0, notify });
  const b = new Fixture(t, { mode: 'pingpong', sab, timeoutMs, rounds, parity: 1, notify });
  const [ma, mb] = await Promise.all([a.next(60_000), b.next(60_000)]);
  t.is(Atomics.load(i32, WORD), 2 * rounds);
  t.is(Atomics.load(i32, FLAG), 0);
  t.is(Atomics.load(i32, FLAG_B), 0);
  return [ma, mb];
}

test('sleeping-flag protocol: thousands of hand-offs between two sleeping workers lose no wake-up', async (t) => {
  const ROUNDS = 5000;
  const [a, b] = await pingpong(t, ROUNDS, MAX_SLEEP_MS, true);
  for (const m of [a, b]) {
    t.is(m.failed, '');
    t.is(m.counts.rounds, ROUNDS);
    t.is(m.counts.timedOut, 0, 'a wait ran into its timeout: a wake-up was lost');
    t.is(m.flag, 0);
  }
  t.true(a.counts.ok + b.counts.ok > ROUNDS / 10, 'the workers really slept and were woken');
  t.log(a.counts, b.counts);
});

test('sleeping-flag protocol self-check: a publisher that skips notify is caught by timed-out waits', async (t) => {
  const [a, b] = await pingpong(t, 6, 30, false);
  t.is(a.failed, '');
  t.is(b.failed, '');
  t.true(a.counts.notifies + b.counts.notifies > 0, 'the publisher saw the other side asleep');
  t.true(a.counts.timedOut + b.counts.timedOut > 0, 'and without a notify the sleeper only woke by timeout');
});

// ---- canBlock ----------------------------------------------------------------------------------

test('canBlock is true in a worker and on Node\'s main thread', async (t) => {
  const f = new Fixture(t, { mode: 'can-block', sab: words().buffer as SharedArrayBuffer, timeoutMs: 0 });
  t.true((await f.next(10_000)).result);
  t.true(canBlock());
});
