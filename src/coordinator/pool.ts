/*
 * A peer's receive pool: the slice allocator (bus1 util/pool.c). Coordinator thread only.
 *
 * The pool is the tail of the peer's IN buffer. The coordinator copies a payload into a
 * slice, publishes a descriptor naming its offset, and the peer reads it in place until
 * it releases the slice. Only the coordinator allocates and frees; the peer never writes
 * the allocator's state, which lives here, in this thread's private memory.
 *
 * The promise this allocator keeps: a send that passed accounting never fails for lack
 * of pool space. A first-fit allocator cannot promise that (one pinned slice per region
 * can fragment the rest), so the pool is split into power-of-two size classes, each with
 * enough slots to hold the peer's whole allowance in that class alone:
 *   class k holds slices of SLICE_MIN_BYTES << k bytes;
 *   class 0 holds every charge up to SLICE_MIN_BYTES and needs `messages` slots;
 *   class k > 0 holds charges in (size(k-1), size(k)], each at least size(k-1) + 8, so
 *   it never needs more than min(messages, floor(bytes / (size(k-1) + 8))) slots.
 * Whatever mix of sizes accounting lets in, every class has a free slot. The price is
 * address space, not memory: SharedArrayBuffer pages are only backed once touched.
 *
 * Slot states: FREE -> QUEUED (descriptor published) -> RECEIVED (peer consumed the
 * descriptor) -> FREE (released, or dropped at disconnect).
 */

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

export class Pool {
  /** Absolute byte offset of the pool in the IN buffer. */
  readonly base: number;
  readonly totalBytes: number;
  private readonly classBase: number[] = [];   // byte offset of class k, relative to base
  private readonly classSlots: number[] = [];
  // Per class: slots never used yet are handed out in order (fresh[k] counts them),
  // freed slots go on a stack, and the per-slot state and charge arrays grow with
  // fresh[k] (an unused class shares frozen empty ones with every other); so an idle
  // peer costs almost no memory here, whatever its limits.
  private readonly fresh: number[] = [];
  private readonly freeStacks: number[][] = [];
  private readonly states: Uint8Array[] = [];
  private readonly charges: Int32Array[] = [];

  constructor(base: number, maxMessages: number, maxBytes: number, largestCharge: number) {
    if (maxMessages > MAX_SLOTS_PER_CLASS) throw new RangeError(`at most ${MAX_SLOTS_PER_CLASS} messages per peer`);
    this.base = base;
    let offset = 0;
    for (let k = 0; ; k++) {
      const size = SLICE_MIN_BYTES << k;
      const slots = k === 0
        ? maxMessages
        : Math.min(maxMessages, Math.floor(maxBytes / ((SLICE_MIN_BYTES << (k - 1)) + 8)));
      this.classBase.push(offset);
      this.classSlots.push(slots);
      this.fresh.push(0);
      this.freeStacks.push(NO_FREE as number[]);
      this.states.push(NO_STATES);
      this.charges.push(NO_CHARGES);
      offset += slots * size;
      if (size >= largestCharge || slots === 0) break;
    }
    this.totalBytes = offset;
  }

  /** Bytes of pool needed for the given limits (to size the IN buffer before building the Pool). */
  static bytesFor(maxMessages: number, maxBytes: number, largestCharge: number): number {
    return new Pool(0, maxMessages, maxBytes, largestCharge).totalBytes;
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

  /** Absolute byte offset of a slot in the IN buffer. */
  offsetOf(slot: number): number {
    const k = slot >>> SLOT_CLASS_SHIFT;
    return this.base + this.classBase[k] + (slot & SLOT_INDEX_MASK) * (SLICE_MIN_BYTES << k);
  }

  /** The slot starting at absolute `offset`, or -1 if no slot starts there or it was never used (untrusted input). */
  slotAt(offset: number): number {
    if (!Number.isInteger(offset)) return -1;
    const rel = offset - this.base;
    if (rel < 0 || rel >= this.totalBytes) return -1;
    const bases = this.classBase;
    let k = 0;
    while (k + 1 < bases.length && bases[k + 1] <= rel) k++;
    const size = SLICE_MIN_BYTES << k;
    const within = rel - bases[k];
    if (within % size !== 0) return -1;
    const i = within / size;
    if (i >= this.fresh[k]) return -1;
    return (k << SLOT_CLASS_SHIFT) | i;
  }
}
