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
 *
 * Longer spins are the Spinner's (below): adaptive, one per waiting site, and limited to
 * a few threads of a bus at once through spin slots in the doorbell. Each thread counts
 * the futex wakes it gets (wakesSoFar), so that a test can bound them.
 */

import { availableParallelism } from 'node:os';

/**
 * Peer threads of one bus that may spin at once: one core is left to the coordinator,
 * which spins while the bus is busy (workers/coordinator.ts).
 */
export const PEER_SPINNERS = Math.min(4, Math.max(1, availableParallelism() - 1));

/** Loads to spend before falling asleep. About 1000 brings a round trip under 2 us here. */
export const SPIN_LOADS = 1000;

/** Longest adaptive spin (Spinner): a wait longer than this is slept through. */
export const SPIN_MAX_MS = 0.1;

/** Shortest adaptive spin budget (a wait of a few microseconds still gets this much). */
const SPIN_MIN_MS = 0.02;

/** A spin slot whose owner has not spun for this long may be taken by another thread. */
const STALE_MS = 2;

/** Longest pause of spinning after failed spins, in waits. */
const MAX_BACKOFF = 32;

/** Loads between two looks at the clock in Spinner.spin(). */
const LOADS_PER_CHECK = 128;

/** Longest single sleep; callers re-check their own state (shutdown, liveness) after each. */
export const MAX_SLEEP_MS = 1000;

export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/** Wake-ups of this thread so far (see wakesSoFar). */
let wakes = 0;

/**
 * How many times this thread has been woken from a sleep by a notify: a blocking or
 * async wait that slept and ended 'ok' (a timeout is not a wake-up). The difference
 * across a request/reply loop, summed over the threads, is the futex wakes that loop
 * paid (perf/wakes.ts, test/wakes.test.ts).
 */
export function wakesSoFar(): number {
  return wakes;
}

/** Spin until i32[index] differs from `seen`; true if it changed within `loads` loads. */
export function spinWhileEqual(i32: Int32Array, index: number, seen: number, loads: number): boolean {
  for (let i = 0; i < loads; i++) {
    if (Atomics.load(i32, index) !== seen) return true;
  }
  return false;
}

/**
 * An adaptive spin for one waiting site: spin only as long as this site's recent waits
 * lasted, and only while this thread holds one of the bus's few spin slots.
 *
 * Why: a waiter that spins catches an answer that comes within microseconds without a
 * futex wake (50-70 us here), but a spinner holds a core, and on 2 cores the thread it
 * waits for may need that very core. So the spin is bounded three ways:
 *   - by the last wait: woke() sets the budget to 2x (at least SPIN_MIN_MS) how long the last wait took when
 *     that was at most SPIN_MAX_MS, and to nothing otherwise (spinning through a long
 *     wait only burns a core); a wait that is short again turns spinning back on;
 *   - by its own failures: a spin that ends without the answer (maybe because it held
 *     the core the answer needed, as on a loaded machine) pauses spinning for the next
 *     1, 2, 4 ... MAX_BACKOFF waits; a spin that succeeds ends the pause;
 *   - by the slots (`slots` words from `slotIndex` of the doorbell, one per spare core):
 *     a thread spins only in a slot it owns, and keeps it across waits while its spins
 *     succeed, so that in a request/reply loop the requester spins and the server (whose
 *     wait is the long one) sleeps; it gives the slot up when it sleeps. A holder that has
 *     not spun for STALE_MS (its beat, the word after the slots, did not move) may be
 *     robbed.
 * The slots are only advice: a thread that corrupts them makes the others sleep sooner
 * or spin a bounded while longer, never wait forever.
 */
export class Spinner {
  /** How long spin() may spin past the first SPIN_LOADS loads (ms; 0: not at all). */
  budgetMs = 0;
  /** Waits left before spinning again after a failed spin, and the next such pause (doubling). */
  #skip = 0;
  #backoff = 1;
  /** The slot this spinner owns (-1: none), and its id in the slot words. */
  #slot = -1;
  readonly #id = 1 + Math.floor(Math.random() * 0x7ffffffe);
  /** A slot found held by another: its owner, beat and when it was seen (for STALE_MS). */
  #seenOwner = 0;
  #seenBeat = 0;
  #seenAt = 0;

  constructor(readonly words: Int32Array | null, readonly slotIndex: number, readonly slots: number) {}

  /** Spin until i32[index] differs from `seen`; true if it changed. False: sleep now (the slot is given up). */
  spin(i32: Int32Array, index: number, seen: number): boolean {
    if (spinWhileEqual(i32, index, seen, SPIN_LOADS)) return true;
    const budget = this.budgetMs;
    if (budget <= 0 || this.#skip > 0 || !this.#takeSlot()) {
      if (this.#skip > 0) this.#skip--;
      this.release();
      return false;
    }
    const words = this.words;
    if (words !== null) Atomics.add(words, this.slotIndex + this.slots + this.#slot, 1);
    const start = performance.now();
    for (;;) {
      if (spinWhileEqual(i32, index, seen, LOADS_PER_CHECK)) {
        this.#backoff = 1;
        return true;
      }
      if (performance.now() - start > budget) break;
    }
    // The answer did not come while this thread held a core: maybe because it held it.
    this.#skip = this.#backoff;
    if (this.#backoff < MAX_BACKOFF) this.#backoff *= 2;
    this.release();
    return false;
  }

  /** The wait that began at `since` (performance.now()) saw its change just now, after a sleep. */
  woke(since: number): void {
    const waited = performance.now() - since;
    this.budgetMs = waited <= SPIN_MAX_MS ? Math.min(SPIN_MAX_MS, Math.max(SPIN_MIN_MS, waited * 2)) : 0;
  }

  /** Give up the slot (before sleeping, or for good). */
  release(): void {
    if (this.#slot < 0) return;
    if (this.words !== null) Atomics.compareExchange(this.words, this.slotIndex + this.#slot, this.#id, 0);
    this.#slot = -1;
  }

  /** True when every slot is held: no spare core is left to a thread that is woken. */
  static allHeld(words: Int32Array, slotIndex: number, slots: number): boolean {
    for (let i = 0; i < slots; i++) if (Atomics.load(words, slotIndex + i) === 0) return false;
    return true;
  }

  #takeSlot(): boolean {
    const words = this.words;
    if (words === null) return true;
    const base = this.slotIndex;
    if (this.#slot >= 0 && Atomics.load(words, base + this.#slot) === this.#id) return true;
    this.#slot = -1;
    for (let i = 0; i < this.slots; i++) {
      if (Atomics.compareExchange(words, base + i, 0, this.#id) === 0) {
        this.#slot = i;
        return true;
      }
    }
    // All held: rob the first one if its owner has not spun for STALE_MS.
    const owner = Atomics.load(words, base);
    const beat = Atomics.load(words, base + this.slots);
    const now = performance.now();
    if (owner !== this.#seenOwner || beat !== this.#seenBeat) {
      this.#seenOwner = owner;
      this.#seenBeat = beat;
      this.#seenAt = now;
      return false;
    }
    if (now - this.#seenAt < STALE_MS || Atomics.compareExchange(words, base, owner, this.#id) !== owner) return false;
    this.#slot = 0;
    return true;
  }
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
  const result = blockWhileEqual(i32, index, seen, timeoutMs);
  Atomics.store(i32, flagIndex, 0);
  return result;
}

/** Atomics.wait, capped at MAX_SLEEP_MS, its wake-ups counted (wakesSoFar); no sleeping flag. */
export function blockWhileEqual(i32: Int32Array, index: number, seen: number, timeoutMs: number): WaitResult {
  // Not Math.min: a NaN timeout (no timeout, to Atomics.wait) must be capped like Infinity.
  const result = Atomics.wait(i32, index, seen, timeoutMs < MAX_SLEEP_MS ? timeoutMs : MAX_SLEEP_MS);
  if (result === 'ok') wakes++;
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
    if (r === 'ok') wakes++;
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
