// Main-thread drivers shared by all systems: the stream protocol (one-way,
// multicast, fan-in, pairs), the request/reply protocol, and idle-memory runs
// in a fresh child process. A system module only says how to wire its roles;
// warm-up, windows, stop, drain and verification live here, identical for all.
//
// Stream measurement: senders run flat out; the main thread samples the
// receivers' published cumulative counters at the start and end of a fixed
// window (after a ramp), so throughput is steady-state deliveries/second at
// the receivers, whatever the thread start-up skew. Then STOP, every sender
// reports what it sent, and receivers must drain to exactly that count with
// no sequence/content error, or the run fails.

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { percentilesUs, type BenchContext, type RunParams, type Sample, type Session, type WorkloadName } from './harness.js';
import type { TransferListItem } from 'node:worker_threads';
import type { Host } from './pool.js';
import {
  ABORT,
  Control,
  DRAIN,
  MEASURE,
  STOP,
  type ClientResult,
  type ControlInit,
  type ReceiverResult,
  type RoleCall,
  type SenderResult,
  type ServerResult,
} from './protocol.js';

// ---------------------------------------------------------------------------
// Shapes

export type StreamWorkload =
  | 'oneway-64B' | 'oneway-64B-send' | 'oneway-64B-idle1000' | 'oneway-1KiB' | 'oneway-64KiB' | 'multicast-8' | 'fanin-64' | 'pairs-64';

export interface StreamShape {
  readonly workload: StreamWorkload;
  readonly senders: number;
  readonly receivers: number;
  /** Receivers each sender's messages go to (every message goes to all of them). */
  readonly dests: (sender: number) => readonly number[];
  readonly payloadBytes: number;
  /** Per-sender counts at the (single) receiver, to show starvation. */
  readonly perSource: boolean;
  /** Stamp 1 in latencyEvery messages for one-way latency (0 = off). Power of two. */
  readonly latencyEvery: number;
}

/** One-way latency under saturation mostly measures queue depth, so only fan-in samples it. */
const FANIN_LATENCY_EVERY = 64;
export const REQREP_PAYLOAD_BYTES = 64;

const all = (n: number) => Array.from({ length: n }, (_, i) => i);

export const STREAM_SHAPES: Readonly<Record<StreamWorkload, StreamShape>> = {
  'oneway-64B': { workload: 'oneway-64B', senders: 1, receivers: 1, dests: () => [0], payloadBytes: 64, perSource: false, latencyEvery: 0 },
  // oneway-64B with a different sender (await send(), 1024 in flight) or 1000 idle peers on the bus (threadbus only).
  'oneway-64B-send': { workload: 'oneway-64B-send', senders: 1, receivers: 1, dests: () => [0], payloadBytes: 64, perSource: false, latencyEvery: 0 },
  'oneway-64B-idle1000': { workload: 'oneway-64B-idle1000', senders: 1, receivers: 1, dests: () => [0], payloadBytes: 64, perSource: false, latencyEvery: 0 },
  'oneway-1KiB': { workload: 'oneway-1KiB', senders: 1, receivers: 1, dests: () => [0], payloadBytes: 1024, perSource: false, latencyEvery: 0 },
  'oneway-64KiB': { workload: 'oneway-64KiB', senders: 1, receivers: 1, dests: () => [0], payloadBytes: 65536, perSource: false, latencyEvery: 0 },
  'multicast-8': { workload: 'multicast-8', senders: 1, receivers: 8, dests: () => all(8), payloadBytes: 64, perSource: false, latencyEvery: 0 },
  'fanin-64': { workload: 'fanin-64', senders: 64, receivers: 1, dests: () => [0], payloadBytes: 64, perSource: true, latencyEvery: FANIN_LATENCY_EVERY },
  'pairs-64': { workload: 'pairs-64', senders: 64, receivers: 64, dests: (s) => [s], payloadBytes: 64, perSource: false, latencyEvery: 0 },
};

/** Senders feeding receiver r, in sender order. */
export function sourcesOf(shape: StreamShape, r: number): number[] {
  return all(shape.senders).filter((s) => shape.dests(s).includes(r));
}

/** Most senders feeding any one receiver. */
export function maxFanIn(shape: StreamShape): number {
  return Math.max(...all(shape.receivers).map((r) => sourcesOf(shape, r).length));
}

/**
 * Bytes that may be in flight towards one receiver, split over its senders.
 * Every system gets the same budget (credit windows for postMessage-style
 * transports, ring capacity for rings), so queueing (and with it one-way
 * latency under saturation) is comparable.
 */
export const IN_FLIGHT_BYTES_PER_RECEIVER = 1 << 20;
const MIN_WINDOW_MSGS = 8;
const MAX_WINDOW_MSGS = 1024;

export interface FlowControl {
  /** Messages a sender may have unacknowledged (per destination). */
  readonly windowMsgs: number;
  /** Receivers ack after this many messages, so acks stay a small share of traffic. */
  readonly ackEvery: number;
}

/** A sender's share of the in-flight budget, in messages (not rounded). */
export function inFlightShare(shape: StreamShape): number {
  return IN_FLIGHT_BYTES_PER_RECEIVER / maxFanIn(shape) / shape.payloadBytes;
}

export function flowControl(shape: StreamShape): FlowControl {
  const perSender = inFlightShare(shape);
  const windowMsgs = Math.max(MIN_WINDOW_MSGS, Math.min(MAX_WINDOW_MSGS, Math.floor(perSender)));
  return { windowMsgs, ackEvery: Math.max(1, windowMsgs >> 2) };
}

// ---------------------------------------------------------------------------
// Stream session

/** Anything that answers role calls: a pooled Host, or a system's own worker wrapper. */
export interface Endpoint {
  call<T>(cmd: RoleCall, timeoutMs: number): Promise<T>;
  notify(msg: RoleCall): void;
}

export interface StreamPlan {
  readonly shape: StreamShape;
  readonly ctl: ControlInit;
  readonly senders: readonly Endpoint[];
  readonly receivers: readonly Endpoint[];
  /** Wake receivers that may be asleep in a blocking wait (called at drain). */
  readonly wake?: () => void;
}

function settleQuietly<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

export class StreamSession {
  private readonly ctl: Control;
  /** Cumulative count each receiver must have reached after the current run (u32). */
  private readonly expected: Uint32Array;
  private readonly latency: boolean;

  constructor(readonly plan: StreamPlan) {
    this.ctl = new Control(plan.ctl);
    this.expected = new Uint32Array(plan.shape.receivers);
    this.latency = plan.shape.latencyEvery > 0;
  }

  abort(): void {
    Atomics.store(this.ctl.i32, ABORT, 1);
    Atomics.store(this.ctl.i32, STOP, 1);
    this.plan.wake?.();
  }

  private readCounts(out: Uint32Array, base: (i: number) => number): void {
    for (let i = 0; i < out.length; i++) out[i] = Atomics.load(this.ctl.u32, base(i));
  }

  async run(p: RunParams): Promise<Sample> {
    const { shape, senders, receivers } = this.plan;
    const i32 = this.ctl.i32;
    Atomics.store(i32, STOP, 0);
    Atomics.store(i32, DRAIN, 0);
    Atomics.store(i32, MEASURE, 0);

    // Receivers first so none misses the start; each answers once drained.
    const recvP = receivers.map((r) => settleQuietly(r.call<ReceiverResult>({ op: 'run' }, p.timeoutMs)));
    const sendP = senders.map((s) => settleQuietly(s.call<SenderResult>({ op: 'run' }, p.timeoutMs)));
    const failed = Promise.race([...recvP, ...sendP]).then(
      () => new Error('a role finished before STOP'),
      (e: unknown) => e,
    );

    const c1 = new Uint32Array(shape.receivers);
    const c2 = new Uint32Array(shape.receivers);
    const s1 = new Uint32Array(shape.perSource ? shape.senders : 0);
    const s2 = new Uint32Array(s1.length);
    const countIdx = (i: number) => this.ctl.countIndex(i);
    const srcIdx = (i: number) => this.ctl.sourceBase + i;

    const early = await Promise.race([sleepThen(p.rampMs, null), failed]);
    if (early) throw early;
    this.readCounts(c1, countIdx);
    this.readCounts(s1, srcIdx);
    const t1 = performance.now();
    Atomics.store(i32, MEASURE, 1);
    const early2 = await Promise.race([sleepThen(p.windowMs, null), failed]);
    if (early2) throw early2;
    this.readCounts(c2, countIdx);
    this.readCounts(s2, srcIdx);
    const t2 = performance.now();
    Atomics.store(i32, MEASURE, 0);

    Atomics.store(i32, STOP, 1);
    const sent = await Promise.all(sendP);
    for (let s = 0; s < shape.senders; s++) {
      for (const r of shape.dests(s)) this.expected[r] = this.expected[r]! + sent[s]!.sent;
    }
    for (let r = 0; r < shape.receivers; r++) Atomics.store(this.ctl.u32, this.ctl.expectBase + r, this.expected[r]!);
    Atomics.store(i32, DRAIN, 1);
    this.plan.wake?.();
    for (const r of receivers) r.notify({ op: 'drain' });
    const got = await Promise.all(recvP);

    let errors = 0;
    for (let r = 0; r < got.length; r++) {
      errors += got[r]!.errors;
      if (got[r]!.total >>> 0 !== this.expected[r]) {
        throw new Error(`receiver ${r} drained ${got[r]!.total} of ${this.expected[r]} messages`);
      }
    }
    if (errors !== 0) throw new Error(`${errors} messages failed verification`);

    let delivered = 0;
    for (let r = 0; r < c1.length; r++) delivered += (c2[r]! - c1[r]!) >>> 0;
    const seconds = (t2 - t1) / 1000;
    const extra: Record<string, number> = {
      windowMs: t2 - t1,
      sentTotal: sent.reduce((a, s) => a + s.sent, 0),
    };
    if (shape.perSource && shape.senders > 1) {
      const per = Array.from(s1, (v, i) => (s2[i]! - v) >>> 0);
      const fair = delivered / per.length;
      extra.shareMinPct = fair > 0 ? (Math.min(...per) / fair) * 100 : 0;
      extra.shareMaxPct = fair > 0 ? (Math.max(...per) / fair) * 100 : 0;
      extra.starvedSenders = per.filter((v) => v === 0).length;
      // Jain's index: 1 = perfectly even, 1/n = one sender got everything.
      const sq = per.reduce((a, v) => a + v * v, 0);
      extra.jainFairness = sq > 0 ? (delivered * delivered) / (per.length * sq) : 0;
    }
    let lat: ReturnType<typeof percentilesUs> = null;
    if (this.latency) {
      lat = percentilesUs(got.map((g) => g.latencyNs).filter((x): x is Uint32Array => x !== null));
      extra.latencySamples = lat?.count ?? 0;
    }
    return {
      msgsPerSec: delivered / seconds,
      p50us: lat?.p50us ?? null,
      p99us: lat?.p99us ?? null,
      p999us: lat?.p999us ?? null,
      extra,
    };
  }
}

function sleepThen<T>(ms: number, v: T): Promise<T> {
  return new Promise((r) => setTimeout(() => r(v), ms));
}

// ---------------------------------------------------------------------------
// Request/reply session: the client role measures its own round trips (it is
// the only clock that matters) during [ramp, ramp + window).

export interface ReqrepPlan {
  readonly ctl: ControlInit;
  readonly client: Endpoint;
  readonly server: Endpoint;
  readonly wake?: () => void;
}

export class ReqrepSession {
  private readonly ctl: Control;

  constructor(readonly plan: ReqrepPlan) {
    this.ctl = new Control(plan.ctl);
  }

  abort(): void {
    Atomics.store(this.ctl.i32, ABORT, 1);
    Atomics.store(this.ctl.i32, STOP, 1);
    this.plan.wake?.();
  }

  async run(p: RunParams): Promise<Sample> {
    Atomics.store(this.ctl.i32, STOP, 0);
    const serverP = settleQuietly(this.plan.server.call<ServerResult>({ op: 'run' }, p.timeoutMs));
    let res: ClientResult;
    try {
      res = await this.plan.client.call<ClientResult>({ op: 'run', rampMs: p.rampMs, windowMs: p.windowMs }, p.timeoutMs);
    } finally {
      Atomics.store(this.ctl.i32, STOP, 1);
      this.plan.wake?.();
    }
    const served = await serverP;
    if (served.errors !== 0) throw new Error(`${served.errors} requests failed verification`);
    return reqrepSample(res);
  }
}

export function reqrepSample(res: ClientResult): Sample {
  if (res.errors !== 0) throw new Error(`${res.errors} replies failed verification`);
  if (res.trips === 0) throw new Error('no round trip completed in the window');
  const lat = percentilesUs([res.samplesNs]);
  return {
    msgsPerSec: res.trips / (res.elapsedMs / 1000),
    p50us: lat?.p50us ?? null,
    p99us: lat?.p99us ?? null,
    p999us: lat?.p999us ?? null,
    extra: { trips: res.trips, latencyDropped: res.dropped },
  };
}

// ---------------------------------------------------------------------------
// Hosted sessions: roles run in pooled host workers.

export interface RoleInit {
  readonly data: unknown;
  readonly transfer?: readonly TransferListItem[];
}

export interface StreamWiring {
  /** Module exporting roles['stream-sender'] and roles['stream-receiver']. */
  readonly roles: URL;
  /** Builds role data for every sender and receiver (channels, rings, ...). */
  wire(shape: StreamShape, ctl: ControlInit): { senders: RoleInit[]; receivers: RoleInit[]; wake?: () => void };
}

export interface ReqrepWiring {
  /** Module exporting roles['rr-client'] and roles['rr-server']. */
  readonly roles: URL;
  wire(ctl: ControlInit): { client: RoleInit; server: RoleInit; wake?: () => void };
}

/**
 * Loads roles into leased hosts, group by group (all of a group in parallel):
 * receivers must exist before senders do, since a BroadcastChannel only gets
 * messages posted after it opened. On failure everything leased is terminated.
 */
async function loadRoles(ctx: BenchContext, roles: URL, groups: readonly (readonly { role: string; init: RoleInit }[])[]): Promise<Host[]> {
  const specs = groups.flat();
  const hosts = await ctx.pool.lease(specs.length);
  try {
    let base = 0;
    for (const g of groups) {
      const at = base;
      await Promise.all(
        g.map(({ role, init }, i) => hosts[at + i]!.load(roles, role, init.data, init.transfer ?? [], ctx.tunables.setupTimeoutMs)),
      );
      base += g.length;
    }
  } catch (e) {
    await ctx.pool.release(hosts, false);
    throw e;
  }
  return hosts;
}

async function unloadRoles(ctx: BenchContext, hosts: readonly Host[], failed: boolean): Promise<void> {
  if (failed) return ctx.pool.release(hosts, false);
  const ok = await Promise.all(
    hosts.map((h) => h.unload(ctx.tunables.closeTimeoutMs).then(() => true, () => false)),
  );
  await Promise.all([
    ctx.pool.release(hosts.filter((_, i) => ok[i]), true),
    ctx.pool.release(hosts.filter((_, i) => !ok[i]), false),
  ]);
}

export async function hostedStream(ctx: BenchContext, workload: StreamWorkload, wiring: StreamWiring): Promise<Session> {
  const shape = STREAM_SHAPES[workload];
  const ctl = Control.create(shape.receivers, shape.senders);
  const w = wiring.wire(shape, ctl);
  const hosts = await loadRoles(ctx, wiring.roles, [
    w.receivers.map((init) => ({ role: 'stream-receiver', init })),
    w.senders.map((init) => ({ role: 'stream-sender', init })),
  ]);
  const session = new StreamSession({
    shape,
    ctl,
    receivers: hosts.slice(0, shape.receivers),
    senders: hosts.slice(shape.receivers),
    ...(w.wake ? { wake: w.wake } : {}),
  });
  return {
    run: (p) => session.run(p),
    close: async (failed) => {
      if (failed) session.abort();
      await unloadRoles(ctx, hosts, failed);
    },
  };
}

export async function hostedReqrep(ctx: BenchContext, wiring: ReqrepWiring): Promise<Session> {
  const ctl = Control.create(1, 1);
  const w = wiring.wire(ctl);
  const hosts = await loadRoles(ctx, wiring.roles, [[{ role: 'rr-server', init: w.server }], [{ role: 'rr-client', init: w.client }]]);
  const session = new ReqrepSession({ ctl, server: hosts[0]!, client: hosts[1]!, ...(w.wake ? { wake: w.wake } : {}) });
  return {
    run: (p) => session.run(p),
    close: async (failed) => {
      if (failed) session.abort();
      await unloadRoles(ctx, hosts, failed);
    },
  };
}

// ---------------------------------------------------------------------------
// Idle-peer memory: measured in a fresh child process per run, because freed
// memory is kept by the allocator and would make every later run look free.

/** What a system's idle-peer export returns; `extra` is reported as-is. */
export interface IdlePeers {
  close?(): void | Promise<void>;
  extra?: Record<string, number>;
}
/**
 * Signature of the export named in idleSession(): create `n` idle peers and keep them
 * alive. A system whose peers need something that exists once per process (threadbus:
 * a started bus, with its coordinator thread) exports `<name>Setup` too; it runs before
 * the first reading, so that the figures are what each further peer costs, not the
 * fixed cost of the bus divided among them.
 */
export type IdlePeersFactory = (n: number, setup?: unknown) => IdlePeers | Promise<IdlePeers>;
export type IdlePeersSetup = () => unknown;

const IDLE_CHILD = fileURLToPath(new URL('./workers/idle-child.js', import.meta.url));

export interface IdleChildResult {
  peers: number;
  rssBytes: number;
  heapBytes: number;
  extra: Record<string, number>;
}

export function runIdleChild(module: URL, exportName: string, peers: number, timeoutMs: number): Promise<IdleChildResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--expose-gc', IDLE_CHILD, module.href, exportName, String(peers)],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`idle child failed: ${err.message} ${stderr.trim().split('\n').pop() ?? ''}`));
        try {
          resolve(JSON.parse(stdout.trim().split('\n').pop()!) as IdleChildResult);
        } catch (e) {
          reject(new Error(`idle child printed no result: ${stdout.slice(0, 200)}`));
        }
      },
    );
  });
}

/**
 * `module` must export `exportName` as an IdlePeersFactory; pass the system
 * module's import.meta.url. One child per measured run, one at a time: children
 * run together would compete for the two cores while they are timed, which costs a
 * system with a second thread (threadbus's coordinator) more than one without.
 */
export function idleSession(ctx: BenchContext, module: string | URL, exportName: string): Promise<Session> {
  const url = typeof module === 'string' ? new URL(module) : module;
  return Promise.resolve({
    run: async (p: RunParams): Promise<Sample> => {
      // A fresh process has nothing to warm up.
      if (p.warmup) return { msgsPerSec: null };
      const r = await runIdleChild(url, exportName, ctx.tunables.idlePeers, p.timeoutMs);
      return {
        msgsPerSec: null,
        bytesPerPeer: r.rssBytes / r.peers,
        extra: { peers: r.peers, heapBytesPerPeer: r.heapBytes / r.peers, ...r.extra },
      };
    },
    close: async () => {},
  });
}

export type { WorkloadName };
