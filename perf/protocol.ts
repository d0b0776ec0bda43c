// Shared by the bench main thread and every worker role: the role contract run by
// perf/workers/host.ts, the shared control block, the payload stamp/check codec,
// a clock comparable across threads, and a preallocated latency recorder.

// ---------------------------------------------------------------------------
// Role contract: a worker module exports `roles: Record<string, RoleFactory>`.

export interface RoleCall {
  readonly op: string;
  readonly [k: string]: unknown;
}

export interface Role {
  /** Answered by the host with the returned value (awaited if a promise). */
  call(cmd: RoleCall): unknown;
  /** Fire-and-forget nudge; roles that block in a loop never see it in time, so it is advisory. */
  notify?(msg: RoleCall): void;
  close(): void | Promise<void>;
}

export type RoleFactory = (data: any) => Role | Promise<Role>;

/** What a stream sender returns from `{ op: 'run' }`: messages sent during this run. */
export interface SenderResult {
  readonly sent: number;
}

/** What a stream receiver returns from `{ op: 'run' }` once drained. */
export interface ReceiverResult {
  /** Cumulative messages received since the role was loaded (u32, wraps). */
  readonly total: number;
  /** Cumulative verification failures (length, order, content). */
  readonly errors: number;
  /** One-way latency samples in ns taken while the control block's MEASURE flag was up. */
  readonly latencyNs: Uint32Array | null;
  readonly latencyDropped: number;
}

/** What a request/reply server returns from `{ op: 'run' }` (at STOP, or at once if always serving). */
export interface ServerResult {
  readonly served: number;
  readonly errors: number;
}

/** What a request/reply client returns from `{ op: 'run', rampMs, windowMs }`. */
export interface ClientResult {
  readonly trips: number;
  readonly elapsedMs: number;
  readonly errors: number;
  readonly samplesNs: Uint32Array;
  readonly dropped: number;
}

// The clock valid across threads is the threadbus command's (src/cli/clock.ts).
import { nowMs } from '../src/cli/clock.js';
export { nowMs };

// ---------------------------------------------------------------------------
// Control block: one Int32Array on a SharedArrayBuffer per session. Flags live on
// their own cache line; every receiver's counter gets its own line so the main
// thread's sampling and the receivers never false-share.

export const STOP = 0;
export const DRAIN = 1;
export const ABORT = 2;
export const MEASURE = 3;
const LINE_I32 = 16;

export interface ControlInit {
  readonly sab: SharedArrayBuffer;
  readonly receivers: number;
  readonly sources: number;
}

const roundUpLine = (n: number): number => Math.ceil(n / LINE_I32) * LINE_I32;

export class Control {
  readonly i32: Int32Array;
  readonly u32: Uint32Array;
  /** Cumulative count each receiver must reach before it may report drained (u32). */
  readonly expectBase: number;
  /** Receiver r publishes its cumulative count at countBase + r * 16. */
  readonly countBase: number;
  /** Per-source cumulative counts, written only when a single receiver owns all sources. */
  readonly sourceBase: number;

  static create(receivers: number, sources: number): ControlInit {
    const i32s = Control.layout(receivers, sources).end;
    return { sab: new SharedArrayBuffer(i32s * 4), receivers, sources };
  }

  private static layout(receivers: number, sources: number) {
    const expectBase = LINE_I32;
    const countBase = expectBase + roundUpLine(receivers);
    const sourceBase = countBase + receivers * LINE_I32;
    const end = sourceBase + roundUpLine(sources);
    return { expectBase, countBase, sourceBase, end };
  }

  constructor(readonly init: ControlInit) {
    this.i32 = new Int32Array(init.sab);
    this.u32 = new Uint32Array(init.sab);
    const l = Control.layout(init.receivers, init.sources);
    this.expectBase = l.expectBase;
    this.countBase = l.countBase;
    this.sourceBase = l.sourceBase;
  }

  countIndex(receiver: number): number {
    return this.countBase + receiver * LINE_I32;
  }

  /** Live view of the per-source counters (for a fan-in receiver's sequence tracking). */
  sourceView(): Uint32Array {
    return new Uint32Array(this.init.sab, this.sourceBase * 4, this.init.sources);
  }
}

// ---------------------------------------------------------------------------
// Payload codec. Layout (little endian):
//   [0..3] u32 seq   [4..5] u16 source   [6] 1 if [8..15] holds a send stamp
//   [8..15] f64 send time (nowMs)   [len>>1] = (seq>>>8)&255   [len-1] = seq&255
// The receiver checks order per source and the two spread-out bytes, so the
// payload is really read (and the last byte of a 64 KiB message really arrives).

export const MIN_PAYLOAD_BYTES = 32;
const f64Scratch = new Float64Array(1);
const f64Bytes = new Uint8Array(f64Scratch.buffer);

export function makeTemplate(len: number): Uint8Array {
  if (len < MIN_PAYLOAD_BYTES) throw new RangeError(`payload must be >= ${MIN_PAYLOAD_BYTES} bytes`);
  const t = new Uint8Array(len);
  for (let i = 0; i < len; i++) t[i] = (i * 31 + 7) & 0xff;
  return t;
}

/** Writes the header into b[off..off+len). `sendMs` NaN means "no latency stamp". */
export function stamp(b: Uint8Array, off: number, len: number, seq: number, src: number, sendMs: number): void {
  b[off] = seq;
  b[off + 1] = seq >>> 8;
  b[off + 2] = seq >>> 16;
  b[off + 3] = seq >>> 24;
  b[off + 4] = src;
  b[off + 5] = src >>> 8;
  if (sendMs === sendMs) {
    b[off + 6] = 1;
    f64Scratch[0] = sendMs;
    for (let i = 0; i < 8; i++) b[off + 8 + i] = f64Bytes[i]!;
  } else {
    b[off + 6] = 0;
  }
  b[off + (len >>> 1)] = seq >>> 8;
  b[off + len - 1] = seq;
}

export function readSeq(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}

/** Latency samples a stream receiver can hold per run (1 in latencyEvery messages). */
export const STREAM_LATENCY_CAPACITY = 1 << 18;
/** Round trips one request/reply run can record (seconds' worth even at ~1 us). */
export const REQREP_LATENCY_CAPACITY = 1 << 21;

/** Preallocated so the hot path never allocates; overflow is counted, not grown. */
export class LatencyRecorder {
  private readonly ns: Uint32Array;
  private n = 0;
  dropped = 0;

  constructor(capacity: number) {
    this.ns = new Uint32Array(capacity);
  }

  record(ns: number): void {
    if (this.n < this.ns.length) this.ns[this.n++] = ns <= 0 ? 0 : ns >= 0xffffffff ? 0xffffffff : ns;
    else this.dropped++;
  }

  /** Copies out the samples and resets. */
  take(): { samples: Uint32Array; dropped: number } {
    const out = { samples: this.ns.slice(0, this.n), dropped: this.dropped };
    this.n = 0;
    this.dropped = 0;
    return out;
  }
}

/**
 * Receive-side accounting shared by every transport: verifies each message,
 * publishes the cumulative count for the main thread's window sampling, and
 * takes latency samples for stamped messages while MEASURE is up.
 */
export class Receipt {
  /** Next expected seq per source == messages received from that source. */
  readonly next: Uint32Array;
  total = 0;
  errors = 0;
  lastSeq = 0;
  private readonly ctl: Int32Array | null;
  private readonly countIndex: number;

  constructor(
    readonly sources: number,
    readonly payloadBytes: number,
    ctl: Control | null,
    receiverIndex: number,
    perSourceShared: boolean,
    readonly latency: LatencyRecorder | null,
    /**
     * False when a source may resend a refused message later (oneway-64B-send retries on
     * EDQUOT): its seqs may then arrive out of order, and only each message's own bytes
     * are checked (the drain still checks the count).
     */
    readonly ordered = true,
  ) {
    this.ctl = ctl ? ctl.i32 : null;
    this.countIndex = ctl ? ctl.countIndex(receiverIndex) : 0;
    this.next = ctl && perSourceShared ? ctl.sourceView() : new Uint32Array(sources);
  }

  check(b: Uint8Array, off: number, len: number): void {
    this.total = (this.total + 1) >>> 0;
    if (this.ctl !== null) this.ctl[this.countIndex] = this.total;
    if (len !== this.payloadBytes) {
      this.errors++;
      return;
    }
    const seq = readSeq(b, off);
    const src = b[off + 4]! | (b[off + 5]! << 8);
    this.lastSeq = seq;
    if (src >= this.sources) {
      this.errors++;
      return;
    }
    if (this.ordered) {
      if (seq !== this.next[src]) this.errors++;
      this.next[src] = seq + 1;
    }
    if (b[off + (len >>> 1)] !== ((seq >>> 8) & 0xff) || b[off + len - 1] !== (seq & 0xff)) this.errors++;
    if (b[off + 6] === 1 && this.latency !== null && (this.ctl === null || Atomics.load(this.ctl, MEASURE) !== 0)) {
      for (let i = 0; i < 8; i++) f64Bytes[i] = b[off + 8 + i]!;
      this.latency.record((nowMs() - f64Scratch[0]!) * 1e6);
    }
  }
}

export function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}
