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
 * when its first slot is first used. The segment goes to the peer through the
 * SegmentSink (segment-mail.ts: posted before any descriptor names it once the peer's
 * thread is known, else as soon as it is; the peer takes it with receiveMessageOnPort
 * when it meets an address it has not mapped, src/peer/pool-map.ts).
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
const SLICE_MIN_SHIFT = 6;

export const SLOT_FREE = 0;
export const SLOT_QUEUED = 1;
export const SLOT_RECEIVED = 2;

/** A slot id is (class << SLOT_CLASS_SHIFT) | index within the class. */
const SLOT_CLASS_SHIFT = 26;
const SLOT_INDEX_MASK = (1 << SLOT_CLASS_SHIFT) - 1;
/** Most slots one class can have (bounds the messages limit of a peer). */
export const MAX_SLOTS_PER_CLASS = 1 << SLOT_CLASS_SHIFT;
const INITIAL_CLASS_CAPACITY = 64;
/** Geometries kept for reuse (peers mostly share their limits); past this many, new ones are not kept. */
const GEOMETRY_CACHE_MAX = 64;

/** Where a segment's bytes are in this thread: pool address `a` is byte `a + delta` of `buf` (and of `i32`). */
export interface PoolSegment {
  readonly buf: Buffer;
  readonly i32: Int32Array;
  /** The same bytes as 64-bit words (whole words only), for the payload copy. */
  readonly b64: BigInt64Array;
  readonly delta: number;
}

/** Who gets a new segment: the pool's peer, before any descriptor names it. */
export interface SegmentSink {
  handOver(address: number, sab: SharedArrayBuffer): void;
}

/**
 * Shared memory for a peer (its one buffer, and pool segments): a growable buffer whose
 * maximum is its size, which it never grows. V8 maps a growable buffer itself; a plain one
 * comes from malloc, which serves sizes under its mmap threshold (128 KiB, and raised past
 * the size of any mapped block freed, such as a dead peer's buffer) from its heap, cleared
 * by calloc: every page touched at once, and kept by the heap when freed. Measured on
 * Node 20: 3.2 MiB peer buffers made after one was freed, 80 us and 140-190 KiB of RSS
 * each, against 5 us and one page; rounds of peers made and closed grew RSS by 640 MiB,
 * against 1-2 MiB (test/memory.test.ts, docs/performance.md).
 */
export function mappedBuffer(bytes: number): SharedArrayBuffer {
  return new SharedArrayBuffer(bytes, { maxByteLength: bytes });
}

/** Bytes of the first segment (the tail of the IN buffer) for a peer that may hold `maxMessages`. */
export function firstSegmentBytes(maxMessages: number): number {
  return Math.min(SEGMENT_BYTES, maxMessages * SLICE_MIN_BYTES);
}

/**
 * The classes of a pool for one set of limits: immutable, and shared by every pool with
 * those limits, so that an idle peer's pool is one small object.
 */
class Geometry {
  /** Bytes of pool address space (never all backed: see Segments above). */
  readonly totalBytes: number;
  readonly classBase: readonly number[];   // pool address of class k (aligned to its segments)
  readonly classSlots: readonly number[];
  /** Per class: log2 of the slots in one segment (every segment but a class's last is full). */
  readonly segSlotShift: readonly number[];

  /** The limits it was made for (Geometry.of). */
  readonly maxMessages: number;
  readonly maxBytes: number;
  readonly largestCharge: number;

  constructor(maxMessages: number, maxBytes: number, largestCharge: number) {
    this.maxMessages = maxMessages;
    this.maxBytes = maxBytes;
    this.largestCharge = largestCharge;
    const classBase: number[] = [];
    const classSlots: number[] = [];
    const segSlotShift: number[] = [];
    let offset = 0;
    for (let k = 0; ; k++) {
      const size = SLICE_MIN_BYTES << k;
      const slots = k === 0
        ? maxMessages
        : Math.min(maxMessages, Math.floor(maxBytes / ((SLICE_MIN_BYTES << (k - 1)) + 8)));
      const segBytes = Math.max(SEGMENT_BYTES, size);
      // Aligned to its segment size, so that a segment never shares a SEGMENT_BYTES granule with another (the peer maps by granule).
      offset = Math.ceil(offset / segBytes) * segBytes;
      classBase.push(offset);
      classSlots.push(slots);
      segSlotShift.push(Math.log2(segBytes / size));
      offset += slots * size;
      if (size >= largestCharge || slots === 0) break;
    }
    this.classBase = classBase;
    this.classSlots = classSlots;
    this.segSlotShift = segSlotShift;
    this.totalBytes = offset;
  }

  static readonly #cache = new Map<string, Geometry>();
  /** The last one asked for: peers made in a row mostly share their limits, and need no key string. */
  static #last: Geometry | null = null;

  static of(maxMessages: number, maxBytes: number, largestCharge: number): Geometry {
    const last = Geometry.#last;
    if (last !== null && last.maxMessages === maxMessages && last.maxBytes === maxBytes && last.largestCharge === largestCharge) {
      return last;
    }
    const key = `${maxMessages}/${maxBytes}/${largestCharge}`;
    let g = Geometry.#cache.get(key);
    if (g === undefined) {
      g = new Geometry(maxMessages, maxBytes, largestCharge);
      if (Geometry.#cache.size < GEOMETRY_CACHE_MAX) Geometry.#cache.set(key, g);
    }
    return Geometry.#last = g;
  }
}

/**
 * One class's allocation state, made at its first allocation: slots never used yet are
 * handed out in order (`fresh` counts them), freed slots go on a stack, and the per-slot
 * state and charge arrays grow with `fresh`.
 */
class ClassState {
  fresh = 0;
  readonly free: number[] = [];
  states = new Uint8Array(0);
  charges = new Int32Array(0);
  /** By window: the segments made so far (fresh slots are used in order, so they fill from 0). */
  readonly segments: PoolSegment[] = [];
}

/** Free slot `i` of class state `c` (reused last-freed first). */
function freeIn(c: ClassState, i: number): void {
  c.states[i] = SLOT_FREE;
  c.charges[i] = 0;
  c.free.push(i);
}

export class Pool {
  readonly #g: Geometry;
  /** Per class, made at its first allocation (null: none yet), so that an idle peer's pool costs almost nothing. */
  #classes: Array<ClassState | undefined> | null = null;
  private inSab: SharedArrayBuffer | null = null;
  private inI32: Int32Array | null = null;
  private inOffset = 0;
  private sink: SegmentSink | null = null;

  constructor(maxMessages: number, maxBytes: number, largestCharge: number) {
    if (maxMessages > MAX_SLOTS_PER_CLASS) throw new RangeError(`at most ${MAX_SLOTS_PER_CLASS} messages per peer`);
    this.#g = Geometry.of(maxMessages, maxBytes, largestCharge);
  }

  /** Bytes of pool address space (never all backed: see Segments above). */
  get totalBytes(): number {
    return this.#g.totalBytes;
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

  /** Where the last alloc() put its slot: its pool address and segment (what offsetOf and segmentOf say), without a second lookup. */
  placedOffset = 0;
  placedSegment: PoolSegment | null = null;

  /** A free slot for `charge` bytes, now QUEUED, or -1 (which accounting must make impossible). Sets placedOffset and placedSegment. */
  alloc(charge: number): number {
    const k = this.classOf(charge);
    const g = this.#g;
    if (k >= g.classSlots.length) return -1;
    const c = this.#classes?.[k] ?? this.openClass(k);
    let i: number;
    if (c.free.length > 0) {
      i = c.free.pop()!;
    } else if (c.fresh < g.classSlots[k]) {
      i = c.fresh++;
      if (i >= c.states.length) this.grow(c, k);
      if ((i & ((1 << g.segSlotShift[k]) - 1)) === 0) this.addSegment(c, k, i >>> g.segSlotShift[k]);
    } else {
      return -1;
    }
    c.states[i] = SLOT_QUEUED;
    c.charges[i] = charge;
    this.placedOffset = g.classBase[k] + i * (SLICE_MIN_BYTES << k);
    this.placedSegment = c.segments[i >>> g.segSlotShift[k]];
    return (k << SLOT_CLASS_SHIFT) | i;
  }

  private openClass(k: number): ClassState {
    const classes = this.#classes ??= new Array<ClassState | undefined>(this.#g.classSlots.length).fill(undefined);
    return classes[k] = new ClassState();
  }

  private grow(c: ClassState, k: number): void {
    const n = Math.min(this.#g.classSlots[k], Math.max(INITIAL_CLASS_CAPACITY, c.states.length * 2));
    const st = new Uint8Array(n);
    st.set(c.states);
    const ch = new Int32Array(n);
    ch.set(c.charges);
    c.states = st;
    c.charges = ch;
  }

  /** Give window `w` of class k memory, and hand it to the peer (before any descriptor can name it). */
  private addSegment(c: ClassState, k: number, w: number): void {
    const g = this.#g;
    const size = SLICE_MIN_BYTES << k;
    const first = w << g.segSlotShift[k];
    const bytes = Math.min(1 << g.segSlotShift[k], g.classSlots[k] - first) * size;
    const address = g.classBase[k] + first * size;
    let seg: PoolSegment;
    if (address === 0) {
      if (this.inSab === null) throw new Error('internal: pool used before attach()');
      const sab = this.inSab;
      seg = { buf: Buffer.from(sab), i32: this.inI32!, b64: new BigInt64Array(sab, 0, sab.byteLength >> 3), delta: this.inOffset };
    } else {
      const sab = mappedBuffer(bytes);
      seg = { buf: Buffer.from(sab), i32: new Int32Array(sab), b64: new BigInt64Array(sab, 0, bytes >> 3), delta: -address };
      this.sink!.handOver(address, sab);
    }
    c.segments.push(seg);
  }

  /** The segment holding a slot (an existing object: nothing is allocated). */
  segmentOf(slot: number): PoolSegment {
    const k = slot >>> SLOT_CLASS_SHIFT;
    return this.#classes![k]!.segments[(slot & SLOT_INDEX_MASK) >>> this.#g.segSlotShift[k]];
  }

  stateOf(slot: number): number {
    return this.#classes![slot >>> SLOT_CLASS_SHIFT]!.states[slot & SLOT_INDEX_MASK];
  }

  /** The bytes charged for the message in a slot. */
  chargedOf(slot: number): number {
    return this.#classes![slot >>> SLOT_CLASS_SHIFT]!.charges[slot & SLOT_INDEX_MASK];
  }

  /** A QUEUED slot's descriptor was consumed: mark it RECEIVED and return the bytes it was charged (one lookup for both). */
  receive(slot: number): number {
    const c = this.#classes![slot >>> SLOT_CLASS_SHIFT]!;
    const i = slot & SLOT_INDEX_MASK;
    c.states[i] = SLOT_RECEIVED;
    return c.charges[i];
  }

  /**
   * SLICE_RELEASE of pool address `offset` (untrusted): free the RECEIVED slot starting
   * there and return the bytes it was charged, or -1 when no RECEIVED slot starts there.
   */
  freeReceived(offset: number): number {
    const slot = this.slotAt(offset);
    if (slot < 0) return -1;
    const c = this.#classes![slot >>> SLOT_CLASS_SHIFT]!;
    const i = slot & SLOT_INDEX_MASK;
    if (c.states[i] !== SLOT_RECEIVED) return -1;
    const bytes = c.charges[i];
    freeIn(c, i);
    return bytes;
  }

  free(slot: number): void {
    freeIn(this.#classes![slot >>> SLOT_CLASS_SHIFT]!, slot & SLOT_INDEX_MASK);
  }

  /** Free every RECEIVED slot (the peer is gone); returns how many and their bytes. */
  freeAllReceived(): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    const classes = this.#classes ?? [];
    for (let k = 0; k < classes.length; k++) {
      const c = classes[k];
      if (c === undefined) continue;
      for (let i = 0; i < c.fresh; i++) {
        if (c.states[i] !== SLOT_RECEIVED) continue;
        const slot = (k << SLOT_CLASS_SHIFT) | i;
        count++;
        bytes += c.charges[i];
        this.free(slot);
      }
    }
    return { count, bytes };
  }

  /** The pool address of a slot (what its descriptor and its release name). */
  offsetOf(slot: number): number {
    const k = slot >>> SLOT_CLASS_SHIFT;
    return this.#g.classBase[k] + (slot & SLOT_INDEX_MASK) * (SLICE_MIN_BYTES << k);
  }

  /** The slot starting at pool address `offset`, or -1 if no slot starts there or it was never used (untrusted input). */
  slotAt(offset: number): number {
    const g = this.#g;
    if (!Number.isInteger(offset)) return -1;
    if (offset < 0 || offset >= g.totalBytes) return -1;
    const bases = g.classBase;
    let k = 0;
    while (k + 1 < bases.length && bases[k + 1] <= offset) k++;
    // Sizes are powers of two and offsets below 2^32: shifts, not a division.
    const within = offset - bases[k];
    if ((within & ((SLICE_MIN_BYTES << k) - 1)) !== 0) return -1;
    const i = within >>> (SLICE_MIN_SHIFT + k);
    if (i >= (this.#classes?.[k]?.fresh ?? 0)) return -1;
    return (k << SLOT_CLASS_SHIFT) | i;
  }
}
