/*
 * The wait layer: spin briefly, then sleep on a 32-bit word of a SharedArrayBuffer.
 *
 * Why spin first: on these machines a futex wake (Atomics.notify to a sleeping thread)
 * costs 50-70 us, while the other side usually answers within a microsecond or two. A
 * short spin of plain Atomics.load calls catches that answer without any syscall.
 *
 * The sleeping-flag protocol (used by every ring in shared/ring.ts) avoids paying for a
 * notify that nobody needs:
 *   waiter:    store(flag, 1); if (load(word) !== seen) { store(flag, 0); return }
 *              wait(word, seen, timeout); store(flag, 0)
 *   publisher: store(word, next); if (load(flag) === 1) notify(word)
 * Atomics are sequentially consistent, so either the waiter sees the new word before it
 * sleeps, or the publisher sees the flag and wakes it: a wake-up is never lost.
 *
 * Every wait here has a timeout. Callers loop on their own deadline and decide what a
 * timeout means (a stuck peer, a shut-down bus); nothing in this file can hang forever.
 *
 * Atomics.waitAsync does not keep Node's event loop alive. sleepWhileEqualAsync() therefore
 * counts the thread's pending async waits and holds one ref'd handle (a never-firing
 * interval) while that count is above zero. The handle has no deadline of its own: a timer
 * with a margin over the wait's timeout can fire first on a loaded machine (the wait's own
 * timeout is delivered by another queue), leave the loop with nothing ref'd, and let an idle
 * worker exit under a pending recv() (exit code 13, an unsettled top-level await).
 */

/** Loads to spend before falling asleep. About 1000 brings a round trip under 2 us here. */
export const SPIN_LOADS = 1000;

/** Longest single sleep; callers re-check their own state (shutdown, liveness) after each. */
export const MAX_SLEEP_MS = 1000;

export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/** Spin until i32[index] differs from `seen`; true if it changed within `loads` loads. */
export function spinWhileEqual(i32: Int32Array, index: number, seen: number, loads: number): boolean {
  for (let i = 0; i < loads; i++) {
    if (Atomics.load(i32, index) !== seen) return true;
  }
  return false;
}

/**
 * Blocking sleep while i32[index] === seen, announcing it through i32[flagIndex].
 * Only for threads that may block (workers); the main thread must use the async form.
 */
export function sleepWhileEqual(
  i32: Int32Array, index: number, seen: number, flagIndex: number, timeoutMs: number,
): WaitResult {
  Atomics.store(i32, flagIndex, 1);
  if (Atomics.load(i32, index) !== seen) {
    Atomics.store(i32, flagIndex, 0);
    return 'not-equal';
  }
  // Not Math.min: a NaN timeout (no timeout, to Atomics.wait) must be capped like Infinity.
  const result = Atomics.wait(i32, index, seen, timeoutMs < MAX_SLEEP_MS ? timeoutMs : MAX_SLEEP_MS);
  Atomics.store(i32, flagIndex, 0);
  return result;
}

/**
 * Event-loop sleep while i32[index] === seen, announcing it through i32[flagIndex] (pass
 * -1 for no flag, when the publisher always notifies). Keeps a ref'd timer while pending
 * so that the thread does not exit under the wait.
 */
export function sleepWhileEqualAsync(
  i32: Int32Array, index: number, seen: number, flagIndex: number, timeoutMs: number,
): Promise<WaitResult> | WaitResult {
  const ms = timeoutMs < MAX_SLEEP_MS ? timeoutMs : MAX_SLEEP_MS; // NaN and Infinity -> MAX_SLEEP_MS
  if (flagIndex >= 0) Atomics.store(i32, flagIndex, 1);
  const w = Atomics.waitAsync(i32, index, seen, ms);
  if (!w.async) {
    if (flagIndex >= 0) Atomics.store(i32, flagIndex, 0);
    return w.value;
  }
  holdLoop();
  return w.value.then((r) => {
    releaseLoop();
    if (flagIndex >= 0) Atomics.store(i32, flagIndex, 0);
    return r;
  });
}

/** Async waits of this thread still pending; the keep-alive handle is ref'd while > 0. */
let pendingAsyncWaits = 0;
/** Never fires on its own (about 12 days), is only ever ref'd or unref'd: no allocation per wait. */
let keepAlive: ReturnType<typeof setInterval> | undefined;

function holdLoop(): void {
  if (pendingAsyncWaits++ === 0) {
    if (keepAlive === undefined) keepAlive = setInterval(noop, 0x40000000);
    else keepAlive.ref();
  }
}

function releaseLoop(): void {
  if (--pendingAsyncWaits === 0) keepAlive!.unref();
}

function noop(): void {}

/** True when the calling thread may block in Atomics.wait (not the main thread of a browser-like host). */
export function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}
