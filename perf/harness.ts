// The bench's vocabulary and measuring loop: workload names, the BenchSystem
// interface every system module implements, the per-run Sample and reported
// Result, the tunables, and measure(): setup, warm-up, N runs, medians, close,
// each step under a timeout so a stuck system reports an error, never a hang.

import { newHistogram, percentiles, recordNs } from '../src/cli/histogram.js';
import type { HostPool } from './pool.js';

export const WORKLOADS = [
  'oneway-64B',
  'oneway-64B-send',
  'oneway-64B-idle1000',
  'oneway-1KiB',
  'oneway-64KiB',
  'reqrep',
  'multicast-8',
  'fanin-64',
  'fanin-64-paced',
  'pairs-64',
  'idle-peer-memory',
] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

/** Parameters of one measured (or warm-up) run. */
export interface RunParams {
  readonly warmup: boolean;
  /** Traffic flows this long before the measurement window opens. */
  readonly rampMs: number;
  /** Length of the measurement window. */
  readonly windowMs: number;
  /** Bound for every wait inside the run (stop, drain, replies). */
  readonly timeoutMs: number;
}

/** What one run measured. Omitted/null fields are "not applicable". */
export interface Sample {
  readonly msgsPerSec: number | null;
  readonly p50us?: number | null;
  readonly p99us?: number | null;
  readonly p999us?: number | null;
  readonly bytesPerPeer?: number | null;
  /** Extra numeric figures; each is reported as its median over runs. */
  readonly extra?: Readonly<Record<string, number>>;
}

/** A workload instance with its workers/channels set up; run() is called warm-up + N times. */
export interface Session {
  run(params: RunParams): Promise<Sample>;
  /** failed=true: a run errored or timed out; tear down forcibly (terminate, don't pool). */
  close(failed: boolean): Promise<void>;
}

export interface BenchContext {
  readonly quick: boolean;
  /** Shared generic worker hosts (optional: a system may spawn its own workers). */
  readonly pool: HostPool;
  readonly tunables: Tunables;
  log(line: string): void;
  /** Phase timings and other detail, only with --verbose. */
  debug(line: string): void;
}

export type WorkloadFactory = (ctx: BenchContext) => Promise<Session>;

/** A system module exports `system: BenchSystem`; absent workloads are "not applicable". */
export interface BenchSystem {
  readonly name: string;
  readonly description: string;
  readonly workloads: Readonly<Partial<Record<WorkloadName, WorkloadFactory>>>;
}

/** One row of the JSON output. */
export interface Result {
  workload: WorkloadName;
  system: string;
  msgsPerSec: number | null;
  p50us: number | null;
  p99us: number | null;
  p999us: number | null;
  bytesPerPeer?: number | null;
  /** Measured runs behind the medians. */
  runs: number;
  /** Warm-up runs made before them (Tunables.warmupSettlePct); absent where there are none. */
  warmupRuns?: number;
  /** (max - min) / median of the headline figure across runs, in percent. */
  spreadPct: number | null;
  /** Wall time spent on this row, setup and teardown included. */
  wallMs: number;
  error?: string;
  [extra: string]: unknown;
}

export interface Tunables {
  /** Fewest warm-up runs; more follow until the rate settles (warmupSettleRuns, warmupSettlePct). */
  readonly warmupRuns: number;
  /**
   * Warm-up runs go on until the last warmupSettleRuns of them agree within
   * warmupSettlePct (highest over lowest msgs/s, in percent)... A system whose per-message
   * work is JavaScript compiles it during the first runs (its rate climbed 1.4-2.6x from
   * the first quick run to the third, December 2026), while a native path such as
   * MessagePort's is steady from the start.
   */
  readonly warmupSettleRuns: number;
  readonly warmupSettlePct: number;
  /** ...or until warm-up has taken this long (manyWorkersWarmupMaxMs for many threads). */
  readonly warmupMaxMs: number;
  readonly runs: number;
  readonly warmupWindowMs: number;
  readonly rampMs: number;
  readonly windowMs: number;
  /** Workloads whose many threads share 2 cores get a longer ramp before sampling. */
  readonly manyWorkersRampMs: number;
  /**
   * ...and a longer warm-up: each of their threads (up to 129) has its own V8 isolate,
   * whose hot path must be run and compiled on its own, with the 2 cores shared by all.
   * After warmupWindowMs a system whose per-message work is JavaScript is still warming
   * up (its runs climbed 3-5x over the first second), while MessagePort's native path is not.
   */
  readonly manyWorkersWarmupWindowMs: number;
  /**
   * 129 isolates on 2 cores take seconds to compile their hot paths: pairs-64 climbed from
   * 0.19 to 2.2 M/s over ten quick runs after the 1 s warm-up window (December 2026).
   */
  readonly manyWorkersWarmupMaxMs: number;
  /** Idle endpoints created per idle-peer-memory run. */
  readonly idlePeers: number;
  /** Covers spawning up to 128 hosts, which takes 3 s idle but 15 s on a loaded 2-core box. */
  readonly setupTimeoutMs: number;
  readonly closeTimeoutMs: number;
  /** Slack added to a run's own duration for stop + drain; generous because 128 threads on 2 busy cores drain slowly. */
  readonly runSlackMs: number;
}

export const QUICK_TUNABLES: Tunables = {
  warmupRuns: 1,
  warmupSettleRuns: 3,
  warmupSettlePct: 15,
  warmupMaxMs: 1_500,
  runs: 3,
  warmupWindowMs: 60,
  rampMs: 20,
  windowMs: 100,
  manyWorkersRampMs: 50,
  manyWorkersWarmupWindowMs: 1_000,
  manyWorkersWarmupMaxMs: 6_000,
  idlePeers: 2_000,
  setupTimeoutMs: 60_000,
  closeTimeoutMs: 5_000,
  runSlackMs: 20_000,
};

export const FULL_TUNABLES: Tunables = {
  warmupRuns: 1,
  warmupSettleRuns: 3,
  warmupSettlePct: 15,
  warmupMaxMs: 5_000,
  runs: 5,
  warmupWindowMs: 300,
  rampMs: 100,
  windowMs: 1_000,
  manyWorkersRampMs: 300,
  manyWorkersWarmupWindowMs: 1_000,
  manyWorkersWarmupMaxMs: 15_000,
  idlePeers: 10_000,
  setupTimeoutMs: 90_000,
  closeTimeoutMs: 10_000,
  runSlackMs: 30_000,
};

const MANY_WORKER_WORKLOADS: ReadonlySet<WorkloadName> = new Set(['fanin-64', 'fanin-64-paced', 'pairs-64', 'multicast-8']);

// ---------------------------------------------------------------------------
// Small helpers

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class TimeoutError extends Error {}

/** Rejects after `ms`; the late outcome of `p` is swallowed (and handed to onLate). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string, onLate?: (v: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(new TimeoutError(`${what} timed out after ${ms} ms`));
    }, ms);
    p.then(
      (v) => {
        if (done) return onLate?.(v);
        done = true;
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

export function median(xs: readonly number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export interface Percentiles {
  p50us: number;
  p99us: number;
  p999us: number;
  count: number;
}

/** The threadbus command's hdr-histogram over nanosecond samples, reported in microseconds. */
export function percentilesUs(samplesNs: readonly Uint32Array[]): Percentiles | null {
  const h = newHistogram();
  for (const s of samplesNs) for (let i = 0; i < s.length; i++) recordNs(h, s[i]!);
  const p = percentiles(h);
  const count = h.totalCount;
  h.destroy();
  return p === null ? null : { p50us: p.p50us, p99us: p.p99us, p999us: p.p999us, count };
}

// ---------------------------------------------------------------------------
// measure(): one (workload, system) row.

/** `first`: the first warm-up run (the long one of the many-thread workloads). */
export function runParamsFor(workload: WorkloadName, t: Tunables, warmup: boolean, first = false): RunParams {
  const many = MANY_WORKER_WORKLOADS.has(workload);
  const rampMs = many ? t.manyWorkersRampMs : t.rampMs;
  // Later warm-up runs of many threads are as long as measured ones: shorter ones are too noisy to settle.
  const windowMs = !warmup ? t.windowMs : !many ? t.warmupWindowMs : first ? t.manyWorkersWarmupWindowMs : t.windowMs;
  return { warmup, rampMs, windowMs, timeoutMs: rampMs + windowMs + t.runSlackMs };
}

/** True when the last `n` rates agree within `pct` percent (highest over lowest). */
function settled(rates: readonly number[], n: number, pct: number): boolean {
  if (rates.length < n) return false;
  const last = rates.slice(-n);
  const lo = Math.min(...last);
  return lo > 0 && (Math.max(...last) / lo - 1) * 100 <= pct;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

/**
 * One (workload, system) row being measured: open() sets its session up and warms it up,
 * runOnce() adds a measured run, finish() closes the session and reports. A failure at
 * any step is kept in the row (error), and later steps do nothing.
 */
class Row {
  readonly samples: Sample[] = [];
  session: Session | undefined;
  error: string | undefined;
  warmupRuns = 0;
  #wallMs = 0;
  #mark = 0;

  constructor(readonly system: BenchSystem, readonly workload: WorkloadName, readonly ctx: BenchContext) {}

  get failed(): boolean {
    return this.error !== undefined;
  }

  #phase(what: string): void {
    const now = performance.now();
    this.ctx.debug(`    ${this.system.name}/${this.workload} ${what} ${(now - this.#mark).toFixed(0)} ms`);
    this.#mark = now;
  }

  /** Time spent on this row only (setup, warm-up, its own runs, close). */
  async #timed<T>(f: () => Promise<T>): Promise<T | undefined> {
    const t0 = performance.now();
    this.#mark = t0;
    try {
      return await f();
    } catch (e) {
      this.error ??= errorText(e);
      return undefined;
    } finally {
      this.#wallMs += performance.now() - t0;
    }
  }

  open(): Promise<void> {
    const { system, workload, ctx } = this;
    const t = ctx.tunables;
    return this.#timed(async () => {
      const factory = system.workloads[workload];
      if (!factory) throw new Error(`${system.name} does not implement ${workload}`);
      this.session = await withTimeout(factory(ctx), t.setupTimeoutMs, `${system.name}/${workload} setup`, (late) => {
        void late.close(true).catch(() => {});
      });
      this.#phase('setup');
      const warmStart = performance.now();
      const maxMs = MANY_WORKER_WORKLOADS.has(workload) ? t.manyWorkersWarmupMaxMs : t.warmupMaxMs;
      const rates: number[] = [];
      for (;;) {
        const p = runParamsFor(workload, t, true, this.warmupRuns === 0);
        const rate = (await withTimeout(this.session.run(p), p.timeoutMs, 'warm-up run')).msgsPerSec;
        this.warmupRuns++;
        this.#phase('warm-up');
        if (rate !== null) rates.push(rate);
        if (this.warmupRuns >= t.warmupRuns && (rate === null || settled(rates, t.warmupSettleRuns, t.warmupSettlePct)
          || performance.now() - warmStart >= maxMs)) break;
      }
    });
  }

  async runOnce(): Promise<void> {
    if (this.failed || this.session === undefined) return;
    const session = this.session;
    await this.#timed(async () => {
      const p = runParamsFor(this.workload, this.ctx.tunables, false);
      this.samples.push(await withTimeout(session.run(p), p.timeoutMs, `run ${this.samples.length + 1}`));
      this.#phase(`run ${this.samples.length}`);
    });
  }

  async finish(): Promise<Result> {
    const session = this.session;
    if (session !== undefined) {
      const t0 = performance.now();
      await withTimeout(session.close(this.failed), this.ctx.tunables.closeTimeoutMs, 'close').catch((e) => {
        this.ctx.log(`  ${this.system.name}/${this.workload}: close failed: ${errorText(e)}`);
      });
      this.#wallMs += performance.now() - t0;
    }
    const { workload, system, warmupRuns } = this;
    if (this.error !== undefined) {
      return {
        workload, system: system.name, msgsPerSec: null, p50us: null, p99us: null, p999us: null,
        runs: this.samples.length, spreadPct: null, wallMs: this.#wallMs, warmupRuns, error: this.error,
      };
    }
    return { ...summarize(workload, system.name, this.samples, this.#wallMs), warmupRuns };
  }
}

/** One (workload, system) row on its own: setup, warm-up, the measured runs, close. */
export async function measure(system: BenchSystem, workload: WorkloadName, ctx: BenchContext): Promise<Result> {
  const row = new Row(system, workload, ctx);
  await row.open();
  for (let i = 0; i < ctx.tunables.runs && !row.failed; i++) await row.runOnce();
  return row.finish();
}

/**
 * Whether a workload's systems are measured side by side (measureSide): not the workloads
 * of 64 senders, whose sessions (up to 128 threads each) are too heavy to keep open for
 * every system at once; those are measured one system at a time (measure).
 */
export function sideBySide(workload: WorkloadName): boolean {
  return workload !== 'pairs-64' && workload !== 'fanin-64' && workload !== 'fanin-64-paced';
}

/**
 * Every system of one workload, side by side: each is set up and warmed up in turn and
 * kept open, then the measured runs alternate between them (run i of every system before
 * run i + 1 of any, each round starting with the next system), and all are closed at
 * the end. The machine here drifts by up to 1.5x over minutes (other tenants): measured
 * in blocks, one system's runs could all fall in a slow minute and the other's in a fast
 * one; alternated, every system's median spans the same minute. A system whose session
 * is open but not running holds only idle threads.
 */
export async function measureSide(systems: readonly BenchSystem[], workload: WorkloadName, ctx: BenchContext): Promise<Result[]> {
  // A row keeps its own failure and skips its later steps: the others go on.
  const rows = systems.map((s) => new Row(s, workload, ctx));
  for (const row of rows) await row.open();
  for (let i = 0; i < ctx.tunables.runs; i++) {
    for (let k = 0; k < rows.length; k++) await rows[(i + k) % rows.length]!.runOnce();
  }
  const results: Result[] = [];
  for (const row of rows) results.push(await row.finish());
  return results;
}

export function summarize(workload: WorkloadName, system: string, samples: readonly Sample[], wallMs: number): Result {
  const pick = (f: (s: Sample) => number | null | undefined): number | null => {
    const xs = samples.map(f).filter((x): x is number => typeof x === 'number');
    return xs.length === samples.length ? median(xs) : null;
  };
  const msgsPerSec = pick((s) => s.msgsPerSec);
  const bytesPerPeer = pick((s) => s.bytesPerPeer);
  const headline = msgsPerSec !== null ? samples.map((s) => s.msgsPerSec!) : bytesPerPeer !== null ? samples.map((s) => s.bytesPerPeer!) : [];
  const mid = median(headline);
  const spreadPct = mid ? ((Math.max(...headline) - Math.min(...headline)) / Math.abs(mid)) * 100 : null;
  const r: Result = {
    workload,
    system,
    msgsPerSec,
    p50us: pick((s) => s.p50us),
    p99us: pick((s) => s.p99us),
    p999us: pick((s) => s.p999us),
    runs: samples.length,
    spreadPct,
    wallMs,
  };
  if (bytesPerPeer !== null) r.bytesPerPeer = bytesPerPeer;
  const keys = new Set(samples.flatMap((s) => Object.keys(s.extra ?? {})));
  for (const k of keys) r[k] = pick((s) => s.extra?.[k]);
  if (msgsPerSec !== null) r.msgsPerSecRuns = samples.map((s) => s.msgsPerSec);
  // Latency has its own run-to-run spread (the paced fan-in's headline is its latency).
  if (r.p99us !== null) {
    const p99s = samples.map((s) => s.p99us!);
    r.p50usRuns = samples.map((s) => s.p50us ?? null);
    r.p99usRuns = p99s;
    r.p99SpreadPct = ((Math.max(...p99s) - Math.min(...p99s)) / r.p99us) * 100;
  }
  return r;
}
