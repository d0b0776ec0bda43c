// A bare single-producer single-consumer byte ring on a SharedArrayBuffer: the
// physical limit of worker-to-worker messaging on this machine, with no
// accounting, quotas or ordering beyond FIFO. Used by the "sab-ring" system.
//
// Records are [u32 length][u32 pad][payload padded to 8], written in place.
// Counters are free-running u32 byte positions (capacity is a power of two),
// so full/empty never need a spare slot. Waiting spins SPIN_LOADS loads, then
// sleeps on Atomics.wait behind a "sleeping" flag, so the other side only pays
// for Atomics.notify when someone is actually asleep.

import { isPowerOfTwo } from './protocol.js';

/** Loads spent polling before a waiter goes to sleep. */
export const SPIN_LOADS = 1000;
/** A sleeper re-checks its stop/abort flags at least this often. */
export const WAIT_SLICE_MS = 10;

const LINE_I32 = 16;
// Producer-written line: the consumer reads it on every refill.
const HEAD = 0;
const PROD_SLEEPING = 1;
// Consumer-written line.
const TAIL = LINE_I32;
const HEADER_BYTES = 2 * LINE_I32 * 4;
const RECORD_HEADER_BYTES = 8;
const WRAP = -1;

// Doorbell (its own SAB, one line): the consumer's sleeping flag and wake word.
// Kept apart from the ring so a consumer of many rings sleeps on one word.
const BELL_SLEEPING = 0;
const BELL_SEQ = 1;
export const DOORBELL_BYTES = LINE_I32 * 4;

export interface RingInit {
  readonly sab: SharedArrayBuffer;
  /** The consumer's doorbell; rings consumed by one thread share it. */
  readonly bell: SharedArrayBuffer;
}

export function createDoorbell(): SharedArrayBuffer {
  return new SharedArrayBuffer(DOORBELL_BYTES);
}

export function createRing(capacityBytes: number, bell: SharedArrayBuffer = createDoorbell()): RingInit {
  if (!isPowerOfTwo(capacityBytes) || capacityBytes < 64) throw new RangeError('ring capacity must be a power of two >= 64');
  return { sab: new SharedArrayBuffer(HEADER_BYTES + capacityBytes), bell };
}

export function ringCapacity(init: RingInit): number {
  return init.sab.byteLength - HEADER_BYTES;
}

export class Doorbell {
  readonly i32: Int32Array;

  constructor(sab: SharedArrayBuffer) {
    this.i32 = new Int32Array(sab);
  }

  /** Producer side, after publishing: pay for a notify only if the consumer sleeps. */
  ring(): void {
    if (Atomics.load(this.i32, BELL_SLEEPING) !== 0) {
      Atomics.add(this.i32, BELL_SEQ, 1);
      Atomics.notify(this.i32, BELL_SEQ);
    }
  }

  /** Unconditional wake, for the main thread at stop/drain time. */
  wake(): void {
    Atomics.add(this.i32, BELL_SEQ, 1);
    Atomics.notify(this.i32, BELL_SEQ);
  }

  /** Consumer: announce sleep. The caller must re-check its rings before sleep(). */
  arm(): number {
    const seq = Atomics.load(this.i32, BELL_SEQ);
    Atomics.store(this.i32, BELL_SLEEPING, 1);
    return seq;
  }

  sleep(seq: number, timeoutMs: number): void {
    Atomics.wait(this.i32, BELL_SEQ, seq, timeoutMs);
  }

  disarm(): void {
    Atomics.store(this.i32, BELL_SLEEPING, 0);
  }
}

export class RingWriter {
  readonly data: Uint8Array;
  private readonly d32: Int32Array;
  private readonly h: Int32Array;
  private readonly bell: Doorbell;
  private readonly capacity: number;
  private readonly mask: number;
  private head: number;
  private pending: number;
  private tailCache: number;

  constructor(init: RingInit) {
    this.capacity = ringCapacity(init);
    this.mask = this.capacity - 1;
    this.h = new Int32Array(init.sab, 0, HEADER_BYTES / 4);
    this.data = new Uint8Array(init.sab, HEADER_BYTES, this.capacity);
    this.d32 = new Int32Array(init.sab, HEADER_BYTES, this.capacity / 4);
    this.bell = new Doorbell(init.bell);
    this.head = Atomics.load(this.h, HEAD) >>> 0;
    this.pending = this.head;
    this.tailCache = Atomics.load(this.h, TAIL) >>> 0;
  }

  /** Largest payload a record may carry: half the ring, so a wrap can always fit. */
  get maxPayload(): number {
    return this.capacity / 2 - RECORD_HEADER_BYTES;
  }

  /**
   * Reserves a record for `len` payload bytes and returns the payload offset in
   * `data`, or -1 if the ring is full. Nothing is visible until publish().
   */
  claim(len: number): number {
    const rec = RECORD_HEADER_BYTES + ((len + 7) & ~7);
    let head = this.head;
    const pos = head & this.mask;
    const toEnd = this.capacity - pos;
    const need = rec <= toEnd ? rec : toEnd + rec;
    if (((head - this.tailCache) >>> 0) + need > this.capacity) {
      this.tailCache = Atomics.load(this.h, TAIL) >>> 0;
      if (((head - this.tailCache) >>> 0) + need > this.capacity) return -1;
    }
    let p = pos;
    if (rec > toEnd) {
      this.d32[pos >> 2] = WRAP;
      head = (head + toEnd) >>> 0;
      p = 0;
    }
    this.d32[p >> 2] = len;
    this.pending = (head + rec) >>> 0;
    return p + RECORD_HEADER_BYTES;
  }

  /**
   * claim() that spins then sleeps until space appears. Returns -1 only when
   * abort[abortIndex] becomes non-zero, so a dead consumer cannot hang us.
   */
  claimWait(len: number, abort: Int32Array, abortIndex: number): number {
    let off = this.claim(len);
    while (off < 0) {
      for (let i = 0; i < SPIN_LOADS && off < 0; i++) off = this.claim(len);
      if (off >= 0) break;
      Atomics.store(this.h, PROD_SLEEPING, 1);
      off = this.claim(len); // re-check after announcing sleep, or a commit could be missed
      if (off < 0) Atomics.wait(this.h, TAIL, this.tailCache | 0, WAIT_SLICE_MS);
      Atomics.store(this.h, PROD_SLEEPING, 0);
      if (off < 0 && Atomics.load(abort, abortIndex) !== 0) return -1;
    }
    return off;
  }

  publish(): void {
    this.head = this.pending;
    Atomics.store(this.h, HEAD, this.head | 0);
    this.bell.ring();
  }
}

export class RingReader {
  readonly data: Uint8Array;
  /** Payload offset of the record last returned by tryRead(). */
  offset = 0;
  private readonly d32: Int32Array;
  private readonly h: Int32Array;
  private readonly capacity: number;
  private readonly mask: number;
  /** Release space to the producer mid-batch once this much has been consumed. */
  private readonly commitBytes: number;
  private tail: number;
  private published: number;
  private headCache: number;

  constructor(init: RingInit) {
    this.capacity = ringCapacity(init);
    this.mask = this.capacity - 1;
    this.commitBytes = this.capacity / 4;
    this.h = new Int32Array(init.sab, 0, HEADER_BYTES / 4);
    this.data = new Uint8Array(init.sab, HEADER_BYTES, this.capacity);
    this.d32 = new Int32Array(init.sab, HEADER_BYTES, this.capacity / 4);
    this.tail = Atomics.load(this.h, TAIL) >>> 0;
    this.published = this.tail;
    this.headCache = Atomics.load(this.h, HEAD) >>> 0;
  }

  /**
   * Returns the next record's payload length (payload at data[offset..]) or -1
   * if empty. The record stays valid until the next tryRead() on this reader,
   * which is when its space is handed back: reading happens in place.
   */
  tryRead(): number {
    let tail = this.tail;
    if (tail === this.headCache) {
      this.commit();
      this.headCache = Atomics.load(this.h, HEAD) >>> 0;
      if (tail === this.headCache) return -1;
    } else if (((tail - this.published) >>> 0) >= this.commitBytes) {
      this.commit();
    }
    let pos = tail & this.mask;
    let len = this.d32[pos >> 2]!;
    if (len === WRAP) {
      tail = (tail + this.capacity - pos) >>> 0;
      pos = 0;
      len = this.d32[0]!;
    }
    this.offset = pos + RECORD_HEADER_BYTES;
    this.tail = (tail + RECORD_HEADER_BYTES + ((len + 7) & ~7)) >>> 0;
    return len;
  }

  /** One load; true if tryRead() would return a record. */
  hasData(): boolean {
    return this.tail !== this.headCache || this.tail !== Atomics.load(this.h, HEAD) >>> 0;
  }

  commit(): void {
    if (this.tail !== this.published) {
      this.published = this.tail;
      Atomics.store(this.h, TAIL, this.tail | 0);
      if (Atomics.load(this.h, PROD_SLEEPING) !== 0) Atomics.notify(this.h, TAIL, 1);
    }
  }
}

/**
 * Consumer idle step for one or many rings sharing `bell`: spin ~SPIN_LOADS
 * loads, then sleep at most WAIT_SLICE_MS. Returns early as soon as any ring
 * has data; callers loop and re-check their own stop conditions.
 */
export function awaitData(readers: readonly RingReader[], bell: Doorbell): void {
  const n = readers.length;
  const rounds = Math.max(1, Math.ceil(SPIN_LOADS / n));
  for (let s = 0; s < rounds; s++) {
    for (let i = 0; i < n; i++) if (readers[i]!.hasData()) return;
  }
  const seq = bell.arm();
  for (let i = 0; i < n; i++) {
    if (readers[i]!.hasData()) {
      bell.disarm();
      return;
    }
  }
  bell.sleep(seq, WAIT_SLICE_MS);
  bell.disarm();
}
