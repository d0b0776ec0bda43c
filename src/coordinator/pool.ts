/*
 * A peer's receive pool: the slice allocator (bus1 util/pool.c). Coordinator thread only.
 *
 * The coordinator copies a payload into a slice, publishes a descriptor naming the
 * slice's pool ADDRESS, and the peer reads it in place until it releases the slice. Only
 * the coordinator allocates and frees; the peer never writes the allocator's state,
 * which lives here, in this thread's private memory.
 *
 * The promise this allocator keeps: a send that passed accounting never fails for lack
 * of pool space. A first-fit allocator cannot promise that (one pinned slice per region
 * can fragment the rest), so the pool is split into power-of-two size classes, each with
 * enough slots to hold the peer's whole allowance in that class alone:
 *   class k holds slices of SLICE_MIN_BYTES << k bytes;
 *   class 0 holds every charge up to SLICE_MIN_BYTES and needs `messages` slots;
 *   class k > 0 holds charges in (size(k-1), size(k)], each at least size(k-1) + 8, so
 *   it never needs more than min(messages, floor(bytes / (size(k-1) + 8))) slots.
 * Whatever mix of sizes accounting lets in, every class has a free slot.
 *
 * Segments: those slots are an address space, not memory. Each class is cut into
 * SEGMENT_BYTES windows (one slot per window for classes larger than that), aligned to
 * their size, and a window gets memory (a SharedArrayBuffer of its own, a SEGMENT) only
 * when its first slot is first used. The segment is posted to the peer, through the
 * SegmentSink, before any descriptor names it (the peer takes it with
 * receiveMessageOnPort when it meets an address it has not mapped: src/peer/inbox.ts).
 * The first window of class 0 is the tail of the peer's IN buffer, so a fresh peer owns
 * one buffer for its rings and first small messages, and nothing else.
 *
 * Segments are kept once made, never dropped: a peer's segments never exceed the
 * address space above, which its limits bound (a hostile sender cannot grow it past
 * that), a receiver's zero-copy views stay valid without tracking which segment each
 * names, and a steady stream reuses them with no allocation or hand-over. Pages of a
 * segment that are never written cost no RSS.
 *
 * Slot states: FREE -> QUEUED (descriptor published) -> RECEIVED (peer consumed the
 * descriptor) -> FREE (released, or dropped at disconnect).
 */

import { SEGMENT_BYTES } from '../../shared/layout.js';

export const SLICE_MIN_BYTES = 64;

export const SLOT_FREE = 0;
export const SLOT_QUEUED = 1;
export const SLOT_RECEIVED = 2;

/** A slot id is (class << SLOT_CLASS_SHIFT) | index within the class. */
const SLOT_CLASS_SHIFT = 26;
const SLOT_INDEX_MASK = (1 << SLOT_CLASS_SHIFT) - 1;
/** Most slots one class can have (bounds the messages limit of a peer). */
export const MAX_SLOTS_PER_CLASS = 1 << SLOT_CLASS_SHIFT;
const INITIAL_CLASS_CAPACITY = 64;
/** What a class has before its first allocation: shared by every class of every pool, never written. */
const NO_STATES = new Uint8Array(0);
const NO_CHARGES = new Int32Array(0);
const NO_FREE: readonly number[] = Object.freeze([]);
const NO_SEGMENTS: readonly PoolSegment[] = Object.freeze([]);

/** Where a segment's bytes are in this thread: pool address `a` is byte `a + delta` of `buf` (and of `i32`). */
export interface PoolSegment {
  readonly buf: Buffer;
  readonly i32: Int32Array;
  readonly delta: number;
}

/** Who gets a new segment: the pool's peer, before any descriptor names it. */
export interface SegmentSink {
  handOver(address: number, sab: SharedArrayBuffer): void;
}

/** Bytes of the first segment (the tail of the IN buffer) for a peer that may hold `maxMessages`. */
export function firstSegmentBytes(maxMessages: number): number {
  return Math.min(SEGMENT_BYTES, maxMessages * SLICE_MIN_BYTES);
}

export class Pool {
  /** Bytes of pool address space (never all backed: see Segments above). */
  readonly totalBytes: number;
  private readonly classBase: number[] = [];   // pool address of class k (aligned to its segments)
  private readonly classSlots: number[] = [];
  /** Per class: log2 of the slots in one segment (every segment but a class's last is full). */
  private readonly segSlotShift: number[] = [];
  // Per class: slots never used yet are handed out in order (fresh[k] counts them),
  // freed slots go on a stack, and the per-slot state and charge arrays grow with
  // fresh[k] (an unused class shares frozen empty ones with every other); so an idle
  // peer costs almost no memory here, whatever its limits.
  private readonly fresh: number[] = [];
  private readonly freeStacks: number[][] = [];
  private readonly states: Uint8Array[] = [];
  private readonly charges: Int32Array[] = [];
  /** Per class, by window: the segments made so far (fresh slots are used in order, so they fill from 0). */
  private readonly segments: PoolSegment[][] = [];
  private inSab: SharedArrayBuffer | null = null;
  private inI32: Int32Array | null = null;
  private inOffset = 0;
  private sink: SegmentSink | null = null;

  constructor(maxMessages: number, maxBytes: number, largestCharge: number) {
    if (maxMessages > MAX_SLOTS_PER_CLASS) throw new RangeError(`at most ${MAX_SLOTS_PER_CLASS} messages per peer`);
    let offset = 0;
    for (let k = 0; ; k++) {
      const size = SLICE_MIN_BYTES << k;
      const slots = k === 0
        ? maxMessages
        : Math.min(maxMessages, Math.floor(maxBytes / ((SLICE_MIN_BYTES << (k - 1)) + 8)));
      const segBytes = Math.max(SEGMENT_BYTES, size);
      // Aligned to its segment size, so that a segment never shares a SEGMENT_BYTES granule with another (the peer maps by granule).
      offset = Math.ceil(offset / segBytes) * segBytes;
      this.classBase.push(offset);
      this.classSlots.push(slots);
      this.segSlotShift.push(Math.log2(segBytes / size));
      this.fresh.push(0);
      this.freeStacks.push(NO_FREE as number[]);
      this.states.push(NO_STATES);
      this.charges.push(NO_CHARGES);
      this.segments.push(NO_SEGMENTS as PoolSegment[]);
      offset += slots * size;
      if (size >= largestCharge || slots === 0) break;
    }
    this.totalBytes = offset;
  }

  /**
   * Bind the pool to its peer: the first segment is `firstSegmentBytes(maxMessages)` bytes
   * of `inSab` from `inOffset`; later segments go to `sink`.
   */
  attach(inSab: SharedArrayBuffer, inI32: Int32Array, inOffset: number, sink: SegmentSink): void {
    this.inSab = inSab;
    this.inI32 = inI32;
    this.inOffset = inOffset;
    this.sink = sink;
  }

  private classOf(charge: number): number {
    // Smallest k with SLICE_MIN_BYTES << k >= charge.
    return charge <= SLICE_MIN_BYTES ? 0 : 32 - Math.clz32((charge - 1) >>> 6);
  }

  /** A free slot for `charge` bytes, now QUEUED, or -1 (which accounting must make impossible). */
  alloc(charge: number): number {
    const k = this.classOf(charge);
    if (k >= this.freeStacks.length) return -1;
    const stack = this.freeStacks[k];
    let i: number;
    if (stack.length > 0) {
      i = stack.pop()!;
    } else if (this.fresh[k] < this.classSlots[k]) {
      i = this.fresh[k]++;
      if (i >= this.states[k].length) this.grow(k);
      if ((i & ((1 << this.segSlotShift[k]) - 1)) === 0) this.addSegment(k, i >>> this.segSlotShift[k]);
    } else {
      return -1;
    }
    this.states[k][i] = SLOT_QUEUED;
    this.charges[k][i] = charge;
    return (k << SLOT_CLASS_SHIFT) | i;
  }

  private grow(k: number): void {
    if (this.freeStacks[k] === NO_FREE) this.freeStacks[k] = [];
    const n = Math.min(this.classSlots[k], Math.max(INITIAL_CLASS_CAPACITY, this.states[k].length * 2));
    const st = new Uint8Array(n);
    st.set(this.states[k]);
    const ch = new Int32Array(n);
    ch.set(this.charges[k]);
    this.states[k] = st;
    this.charges[k] = ch;
  }

  /** Give window `w` of class k memory, and hand it to the peer (before any descriptor can name it). */
  private addSegment(k: number, w: number): void {
    const size = SLICE_MIN_BYTES << k;
    const first = w << this.segSlotShift[k];
    const bytes = Math.min(1 << this.segSlotShift[k], this.classSlots[k] - first) * size;
    const address = this.classBase[k] + first * size;
    let seg: PoolSegment;
    if (address === 0) {
      if (this.inSab === null) throw new Error('internal: pool used before attach()');
      seg = { buf: Buffer.from(this.inSab), i32: this.inI32!, delta: this.inOffset };
    } else {
      const sab = new SharedArrayBuffer(bytes);
      seg = { buf: Buffer.from(sab), i32: new Int32Array(sab), delta: -address };
      this.sink!.handOver(address, sab);
    }
    if (this.segments[k] === NO_SEGMENTS) this.segments[k] = [];
    this.segments[k].push(seg);
  }

  /** The segment holding a slot (an existing object: nothing is allocated). */
  segmentOf(slot: number): PoolSegment {
    const k = slot >>> SLOT_CLASS_SHIFT;
    return this.segments[k][(slot & SLOT_INDEX_MASK) >>> this.segSlotShift[k]];
  }

  /** Segments made so far (stats and tests). */
  segmentCount(): number {
    let n = 0;
    for (const s of this.segments) n += s.length;
    return n;
  }

  stateOf(slot: number): number {
    return this.states[slot >>> SLOT_CLASS_SHIFT][slot & SLOT_INDEX_MASK];
  }

  /** The bytes charged for the message in a slot. */
  chargedOf(slot: number): number {
    return this.charges[slot >>> SLOT_CLASS_SHIFT][slot & SLOT_INDEX_MASK];
  }

  markReceived(slot: number): void {
    this.states[slot >>> SLOT_CLASS_SHIFT][slot & SLOT_INDEX_MASK] = SLOT_RECEIVED;
  }

  free(slot: number): void {
    const k = slot >>> SLOT_CLASS_SHIFT;
    const i = slot & SLOT_INDEX_MASK;
    this.states[k][i] = SLOT_FREE;
    this.charges[k][i] = 0;
    this.freeStacks[k].push(i);
  }

  /** Free every RECEIVED slot (the peer is gone); returns how many and their bytes. */
  freeAllReceived(): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    for (let k = 0; k < this.states.length; k++) {
      const st = this.states[k];
      for (let i = 0; i < this.fresh[k]; i++) {
        if (st[i] !== SLOT_RECEIVED) continue;
        const slot = (k << SLOT_CLASS_SHIFT) | i;
        count++;
        bytes += this.chargedOf(slot);
        this.free(slot);
      }
    }
    return { count, bytes };
  }

  /** The pool address of a slot (what its descriptor and its release name). */
  offsetOf(slot: number): number {
    const k = slot >>> SLOT_CLASS_SHIFT;
    return this.classBase[k] + (slot & SLOT_INDEX_MASK) * (SLICE_MIN_BYTES << k);
  }

  /** The slot starting at pool address `offset`, or -1 if no slot starts there or it was never used (untrusted input). */
  slotAt(offset: number): number {
    if (!Number.isInteger(offset)) return -1;
    if (offset < 0 || offset >= this.totalBytes) return -1;
    const bases = this.classBase;
    let k = 0;
    while (k + 1 < bases.length && bases[k + 1] <= offset) k++;
    const size = SLICE_MIN_BYTES << k;
    const within = offset - bases[k];
    if (within % size !== 0) return -1;
    const i = within / size;
    if (i >= this.fresh[k]) return -1;
    return (k << SLOT_CLASS_SHIFT) | i;
  }
}
