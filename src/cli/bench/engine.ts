/*
 * The load engine's main thread: runs one phase (its transport wired by wiring.ts, one
 * thread per peer: a Worker of its own, or one the caller lends, ThreadLauncher), starts
 * every peer at one time zero, samples the counters, the merged latency histograms and
 * (on threadbus) the service uid's quota shares every tick, stops on time, on
 * --messages, on a peer's error or on request (Ctrl-C), drains, and returns what it
 * measured. Progress goes to `onTick`; the engine prints nothing itself.
 *
 * Invariants: every wait is bounded (a thread that does not report or exit in time is
 * terminated and the run says so); the bus is closed and every peer thread has exited
 * or been terminated when run() settles, whatever happened.
 */

import { Worker, type TransferListItem } from 'node:worker_threads';
import type { Histogram } from 'hdr-histogram-js';
import type { Bus } from '../../index.js';
import { nowMs } from '../clock.js';
import { addEncoded, newHistogram, percentileCurve, percentiles, type Percentiles } from '../histogram.js';
import type { BenchConfig } from './options.js';
import type { ThreadReport } from './peer-thread.js';
import {
  DRAIN, RECEIVED, REFUSED, SENT, SERVICE_UID, STOP, controlBlock, isSender, planPeers, readCounter, type PeerPlan,
} from './plan.js';
import { wireMessagePort, wireThreadbus, type Transport, type Wiring } from './wiring.js';
import type { WorkerInit } from './run-peer.js';

export type { Transport, WorkerInit };

/**
 * What the engine needs of a peer's thread: it reports on 'message' (ThreadReport), takes
 * the start command, says 'exit' once its peer is closed, 'error' if it crashed, and can
 * be terminated. A Worker of its own by default; a caller that keeps threads across runs
 * (the project's benchmark) lends its own (Phase options, `launch`).
 */
export interface PeerThreadHandle {
  postMessage(m: unknown): void;
  on(event: string, listener: (...args: any[]) => void): unknown;
  once(event: string, listener: (...args: any[]) => void): unknown;
  terminate(): Promise<unknown>;
}

/** Start peer `index`'s thread with its init (`transfer`: what the init moves). */
export type ThreadLauncher = (init: WorkerInit, transfer: TransferListItem[], index: number, name: string) => PeerThreadHandle;

const WORKER_URL = new URL('./worker.js', import.meta.url);
const ownWorker: ThreadLauncher = (init, transfer, _index, name) => new Worker(WORKER_URL, { workerData: init, transferList: transfer, name });

export const TICK_MS = 500;
/** Bounds: thread start-up (many threads on 2 cores are slow), drain, exit. */
const READY_TIMEOUT_MS = 60_000;
const DRAIN_TIMEOUT_MS = 30_000;
const EXIT_TIMEOUT_MS = 10_000;
/** Start a little in the future so that every thread sees the same time zero. */
const START_DELAY_MS = 20;

export interface TimelinePoint {
  /** Seconds since the start. */
  t: number;
  msgsPerSec: number;
  p99us: number | null;
}

export interface UidRow {
  uid: number;
  sent: number;
  received: number;
  refused: number;
}

export interface PhaseResult {
  transport: Transport;
  durationS: number;
  /** Messages received (round trips for reqrep). */
  delivered: number;
  msgsPerSec: number;
  bytesPerSec: number;
  latency: Percentiles | null;
  curve: Array<{ p: number; us: number }>;
  timeline: TimelinePoint[];
  byUid: UidRow[];
  /** Share of the service uid's quota each sending uid held, in percent, per tick. */
  shares: Array<{ t: number; byUid: Record<number, number> }>;
  interrupted: boolean;
  errors: string[];
}

export interface Progress {
  transport: Transport;
  elapsedS: number;
  msgsPerSec: number;
  bytesPerSec: number;
  p99us: number | null;
  refused: number;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), ms); })])
    .finally(() => clearTimeout(timer));
}

/** A percentage of the larger of the messages and bytes maxima a share holds. */
function sharePct(share: { messages: number; bytes: number }, max: { messages: number; bytes: number }): number {
  return 100 * Math.max(share.messages / max.messages, share.bytes / max.bytes);
}

/** What a window of a running phase measured (see Phase.takeWindow). */
export interface Window {
  seconds: number;
  delivered: number;
  latency: Percentiles | null;
}

/**
 * One phase of a bench run. `stop()` ends it early (Ctrl-C); what was measured is still
 * returned. A caller that cuts one long phase into windows (the project's benchmark, to
 * reuse its threads across runs) awaits `started` and calls takeWindow(); latency then
 * arrives in steps of `tickMs`, the period at which threads ship their histograms.
 */
export class Phase {
  #stopRequested = false;
  #i32: Int32Array | null = null;
  readonly tickMs: number;
  /** Resolves once every thread has been told to start; rejects if the phase failed before. */
  readonly started: Promise<void>;
  #markStarted!: (ok: boolean, e?: unknown) => void;
  #window = { hist: null as Histogram | null, at: 0, count: 0, delivered: (): number => 0, errors: [] as string[] };

  readonly #launch: ThreadLauncher;

  constructor(
    readonly cfg: BenchConfig, readonly transport: Transport, readonly onTick: (p: Progress) => void,
    opts?: { tickMs?: number; launch?: ThreadLauncher },
  ) {
    this.tickMs = opts?.tickMs ?? TICK_MS;
    this.#launch = opts?.launch ?? ownWorker;
    this.started = new Promise<void>((resolve, reject) => {
      this.#markStarted = (ok, e) => (ok ? resolve() : reject(e));
    });
    this.started.catch(() => {});
  }

  /** Latency samples that arrived since the last takeWindow(). */
  get windowSamples(): number {
    return this.#window.hist?.totalCount ?? 0;
  }

  /** Throughput and latency since the previous call (or the start). */
  takeWindow(): Window {
    const w = this.#window;
    if (w.errors.length > 0) throw new Error(w.errors[0]);
    if (w.hist === null) throw new Error('takeWindow: the phase has not started');
    const now = nowMs();
    const count = w.delivered();
    const out = { seconds: (now - w.at) / 1000, delivered: count - w.count, latency: percentiles(w.hist) };
    w.hist.reset();
    w.at = now;
    w.count = count;
    return out;
  }

  stop(): void {
    this.#stopRequested = true;
    if (this.#i32 !== null) Atomics.store(this.#i32, STOP, 1);
  }

  /** Run the phase to its end. Whatever fails before the threads start rejects `started` too. */
  async run(): Promise<PhaseResult> {
    try {
      return await this.#run();
    } catch (e) {
      this.#markStarted(false, e); // no effect once started resolved
      throw e;
    }
  }

  async #run(): Promise<PhaseResult> {
    const cfg = this.cfg;
    const plans = planPeers(cfg);
    const ctl = controlBlock(plans.length);
    const i32 = (this.#i32 = new Int32Array(ctl));
    if (this.#stopRequested) Atomics.store(i32, STOP, 1);
    let wiring: Wiring;
    try {
      wiring = this.transport === 'threadbus' ? await wireThreadbus(cfg, plans, ctl, this.tickMs) : wireMessagePort(cfg, plans, ctl, this.tickMs);
    } catch (e) {
      this.#markStarted(false, e);
      throw e;
    }
    const errors = this.#window.errors;
    const total = newHistogram();
    const tick = newHistogram();
    const windowHist = (this.#window.hist = newHistogram());
    const workers: PeerThreadHandle[] = [];
    const done: Promise<void>[] = [];
    const exited: Promise<void>[] = [];
    const ready: Promise<void>[] = [];
    try {
      for (const p of plans) {
        const w = this.#launch(wiring.inits[p.index]!, wiring.transfers[p.index]!, p.index, `bench-${p.role}-${p.index}`);
        workers.push(w);
        exited.push(new Promise((r) => w.once('exit', () => r())));
        ready.push(new Promise((resolve, reject) => {
          w.once('error', reject);
          w.once('exit', () => reject(new Error(`peer thread ${p.index} (${p.role}) exited before it was ready`)));
          w.once('message', () => resolve());
        }));
        done.push(new Promise((resolve) => {
          w.on('message', (m: ThreadReport) => {
            if ((m.type === 'tick' || m.type === 'done') && m.hist !== null) {
              addEncoded(total, m.hist);
              addEncoded(tick, m.hist);
              addEncoded(windowHist, m.hist);
            }
            if (m.type === 'done') {
              if (m.error !== null) errors.push(`${p.role} ${p.index}: ${m.error}`);
              resolve();
            }
          });
          w.on('error', (e) => {
            errors.push(`${p.role} ${p.index}: ${e.message}`);
            Atomics.store(i32, STOP, 1);
            resolve();
          });
          w.once('exit', () => resolve());
        }));
      }
      const started = await withTimeout(Promise.all(ready), READY_TIMEOUT_MS);
      if (started === 'timeout') throw new Error(`peer threads not ready after ${READY_TIMEOUT_MS} ms`);
      return await this.#measure(plans, workers, done, i32, wiring.bus, total, tick, errors);
    } catch (e) {
      this.#markStarted(false, e);
      throw e;
    } finally {
      Atomics.store(i32, STOP, 1);
      Atomics.store(i32, DRAIN, 1);
      if ((await withTimeout(Promise.all(exited), EXIT_TIMEOUT_MS)) === 'timeout') {
        errors.push('a peer thread did not exit; terminated');
        await Promise.all(workers.map((w) => w.terminate()));
      }
      await wiring.bus?.close().catch(() => undefined);
      total.destroy();
      tick.destroy();
      windowHist.destroy();
      this.#window.hist = null;
    }
  }

  async #measure(
    plans: PeerPlan[], workers: PeerThreadHandle[], done: Promise<void>[], i32: Int32Array, bus: Bus | null,
    total: Histogram, tick: Histogram, errors: string[],
  ): Promise<PhaseResult> {
    const cfg = this.cfg;
    const counting = plans.filter((p) => p.role === (cfg.pattern === 'reqrep' ? 'client' : 'receiver'));
    const sum = (ps: PeerPlan[], which: number) => ps.reduce((a, p) => a + readCounter(i32, p.index, which), 0);
    const senderIdx = plans.filter(isSender).map((p) => p.index);
    const sendersDone = Promise.all(senderIdx.map((i) => done[i]!));
    let sendersFinished = false;
    void sendersDone.then(() => {
      sendersFinished = true;
    });

    const t0 = nowMs() + START_DELAY_MS;
    // Receivers first, so that none misses the start.
    const order = [...plans].sort((a, b) => Number(isSender(a)) - Number(isSender(b)));
    for (const p of order) workers[p.index]!.postMessage({ type: 'start', t0 });
    Object.assign(this.#window, { at: t0, count: 0, delivered: () => sum(counting, RECEIVED) });
    this.#markStarted(true);

    const timeline: TimelinePoint[] = [];
    const shares: PhaseResult['shares'] = [];
    let lastCount = 0;
    let lastT = t0;
    /** One timeline point; a point over a sliver of time (the last one before the end) says nothing. */
    const sample = async (final = false): Promise<void> => {
      const now = nowMs();
      if (!final && now - lastT < this.tickMs / 2) return;
      const count = sum(counting, RECEIVED);
      const rate = ((count - lastCount) * 1000) / Math.max(1, now - lastT);
      const p99 = tick.totalCount > 0 ? tick.getValueAtPercentile(99) / 1000 : null;
      tick.reset();
      lastCount = count;
      lastT = now;
      const t = (now - t0) / 1000;
      timeline.push({ t, msgsPerSec: rate, p99us: p99 });
      if (bus !== null) {
        const u = await bus.usage(SERVICE_UID).catch(() => null);
        if (u !== null) {
          const byUid: Record<number, number> = {};
          for (let uid = 1; uid <= cfg.uids; uid++) byUid[uid] = u.shares[uid] ? sharePct(u.shares[uid], u.max) : 0;
          shares.push({ t, byUid });
        }
      }
      this.onTick({
        transport: this.transport, elapsedS: t, msgsPerSec: rate, bytesPerSec: rate * cfg.size,
        p99us: total.totalCount > 0 ? total.getValueAtPercentile(99) / 1000 : null,
        refused: sum(plans, REFUSED),
      });
    };

    const endAt = cfg.durationS === null ? Infinity : t0 + cfg.durationS * 1000;
    let stoppedAt: number | null = null;
    for (;;) {
      const now = nowMs();
      if (now >= endAt) Atomics.store(i32, STOP, 1);
      const wait = now < endAt ? Math.min(this.tickMs, endAt - now) : this.tickMs;
      if ((await withTimeout(sendersDone, wait)) !== 'timeout') break;
      if (Atomics.load(i32, STOP) !== 0) {
        stoppedAt ??= nowMs();
        if (nowMs() - stoppedAt > DRAIN_TIMEOUT_MS) {
          errors.push(`senders did not stop within ${DRAIN_TIMEOUT_MS} ms`);
          break;
        }
      }
      await sample();
    }
    Atomics.store(i32, DRAIN, 1);
    const drained = await withTimeout(Promise.all(done), DRAIN_TIMEOUT_MS);
    if (drained === 'timeout') errors.push(`receivers did not drain within ${DRAIN_TIMEOUT_MS} ms`);
    const end = nowMs();
    await sample(true);

    const durationS = (end - t0) / 1000;
    const delivered = sum(counting, RECEIVED);
    const uids = [...new Set(plans.map((p) => p.uid))].sort((a, b) => a - b);
    return {
      transport: this.transport,
      durationS,
      delivered,
      msgsPerSec: delivered / durationS,
      bytesPerSec: (delivered * cfg.size) / durationS,
      latency: percentiles(total),
      curve: percentileCurve(total),
      timeline,
      byUid: uids.map((uid) => {
        const ps = plans.filter((p) => p.uid === uid);
        return { uid, sent: sum(ps, SENT), received: sum(ps, RECEIVED), refused: sum(ps, REFUSED) };
      }),
      shares,
      interrupted: this.#stopRequested,
      errors,
    };
  }
}
