/*
 * What every bench peer thread shares, whatever the transport: its plan, the payload
 * stamp (sequence number and send time), the pacing schedule, the counters the main
 * thread reads, the latency histogram it ships every tick, and the thread's life cycle
 * (ready -> start -> done). Nothing here allocates per message.
 *
 * Payload layout (little endian): [0..3] u32 seq, [8..15] f64 time on the shared clock
 * (the scheduled send time when paced, as wrk2 does, else the moment of sending).
 */

import { parentPort, type MessagePort } from 'node:worker_threads';
import { setImmediate as yieldNow } from 'node:timers/promises';
import type { Histogram } from 'hdr-histogram-js';
import { nowMs } from '../clock.js';
import { encodeHistogram, newHistogram, recordNs } from '../histogram.js';
import { DRAIN, STOP, counterIndex, type PeerPlan } from './plan.js';

export const MIN_PAYLOAD_BYTES = 16;

/** Messages from a peer thread to the main thread. */
export type ThreadReport =
  | { type: 'ready' }
  | { type: 'tick'; hist: string | null }
  | { type: 'done'; hist: string | null; error: string | null };

/** The main thread's one message to a peer thread: go, with the run's time zero. */
export interface StartCommand {
  type: 'start';
  t0: number;
}

export interface CommonInit {
  readonly transport: 'threadbus' | 'messageport';
  readonly plan: PeerPlan;
  readonly size: number;
  readonly ctl: SharedArrayBuffer;
  readonly tickMs: number;
}

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);

export function makePayload(size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = MIN_PAYLOAD_BYTES; i < size; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}

export function stamp(b: Uint8Array, seq: number, timeMs: number): void {
  b[0] = seq;
  b[1] = seq >>> 8;
  b[2] = seq >>> 16;
  b[3] = seq >>> 24;
  f64[0] = timeMs;
  for (let i = 0; i < 8; i++) b[8 + i] = f64Bytes[i]!;
}

export function stampedMs(b: Uint8Array): number {
  for (let i = 0; i < 8; i++) f64Bytes[i] = b[8 + i]!;
  return f64[0]!;
}

/**
 * When a sender's messages are due: message k at t0 + k / rate when paced, at once
 * otherwise; and how many it may send in all (its share of --messages).
 */
export class Schedule {
  readonly intervalMs: number;
  readonly quota: number;

  constructor(plan: PeerPlan, readonly t0: number) {
    this.intervalMs = plan.ratePerSec > 0 ? 1000 / plan.ratePerSec : 0;
    this.quota = plan.quota > 0 ? plan.quota : Infinity;
  }

  get paced(): boolean {
    return this.intervalMs > 0;
  }

  timeOf(k: number): number {
    return this.t0 + k * this.intervalMs;
  }

  /** The time to stamp into message k: when it was due (paced), or now. */
  stampOf(k: number): number {
    return this.intervalMs > 0 ? this.t0 + k * this.intervalMs : nowMs();
  }

  /** How many messages may have been sent by now: due and within the quota. */
  limit(): number {
    return this.intervalMs > 0 ? Math.min(this.quota, Math.floor((nowMs() - this.t0) / this.intervalMs) + 1) : this.quota;
  }
}

/**
 * Sleep until `ms` on the shared clock (at least a timer tick). A paced sender never
 * spins: many of them share few cores, so each wakes about once a millisecond and sends
 * what fell due, and the latency still counts from each message's scheduled time.
 */
export async function waitUntil(ms: number): Promise<void> {
  const left = ms - nowMs();
  if (left > 0) await new Promise((r) => setTimeout(r, Math.max(1, left)));
  else await yieldNow();
}

/**
 * The loop of a sender that sends one message at a time: `send(seq, stamp)` for each
 * message as it falls due, until stopped or the quota is reached. `send` returns false
 * when the message did not go (no room yet): it is tried again.
 */
export async function eachDue(t: PeerThread, sched: Schedule, send: (seq: number, stampMs: number) => Promise<boolean> | boolean): Promise<void> {
  let seq = 0;
  while (!t.stopped && seq < sched.quota) {
    if (seq >= sched.limit()) await waitUntil(sched.timeOf(seq));
    else if (await send(seq, sched.stampOf(seq))) seq++;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class PeerThread {
  readonly i32: Int32Array;
  readonly plan: PeerPlan;
  #hist: Histogram = newHistogram();
  #ticker: NodeJS.Timeout | null = null;
  #nextYield = 0;

  /** Where reports go and the start comes from: the parent's port, unless the thread was lent (engine.ts ThreadLauncher). */
  readonly port: MessagePort;

  constructor(readonly init: CommonInit, port?: MessagePort) {
    this.port = port ?? parentPort!;
    this.i32 = new Int32Array(init.ctl);
    this.plan = init.plan;
  }

  get stopped(): boolean {
    return Atomics.load(this.i32, STOP) !== 0;
  }

  get draining(): boolean {
    return Atomics.load(this.i32, DRAIN) !== 0;
  }

  add(which: number, n: number): void {
    if (n !== 0) Atomics.add(this.i32, counterIndex(this.plan.index, which), n);
  }

  /** Latency of a message stamped at `sentMs` on the shared clock. */
  recordSince(sentMs: number): void {
    recordNs(this.#hist, (nowMs() - sentMs) * 1e6);
  }

  /** True about every 20 ms: the caller should yield to the event loop (ticks, messages). */
  dueToYield(): boolean {
    const t = performance.now();
    if (t < this.#nextYield) return false;
    this.#nextYield = t + 20;
    return true;
  }

  /** The latency recorded since the last call, encoded; null when there is none (senders). */
  #takeHistogram(): string | null {
    if (this.#hist.totalCount === 0) return null;
    const s = encodeHistogram(this.#hist);
    this.#hist.reset();
    return s;
  }

  /** Announce readiness, wait for the start, run `body`, report. */
  async serve(body: (t0: number) => Promise<void>): Promise<void> {
    const port = this.port;
    const t0 = await new Promise<number>((resolve) => {
      port.once('message', (m: StartCommand) => resolve(m.t0));
      port.postMessage({ type: 'ready' } satisfies ThreadReport);
    });
    this.#ticker = setInterval(() => port.postMessage({ type: 'tick', hist: this.#takeHistogram() } satisfies ThreadReport), this.init.tickMs);
    let error: string | null = null;
    try {
      await body(t0);
    } catch (e) {
      error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      Atomics.store(this.i32, STOP, 1);
    }
    clearInterval(this.#ticker);
    port.postMessage({ type: 'done', hist: this.#takeHistogram(), error } satisfies ThreadReport);
    this.#hist.destroy();
  }
}
