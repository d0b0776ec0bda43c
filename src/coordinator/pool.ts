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

export class Pool {
  /** Absolute byte offset of the pool in the IN buffer. */
  readonly base: number;
  readonly totalBytes: number;
  /** Per global slot: SLOT_* state. */
  readonly state: Uint8Array;
  /** Per global slot: the bytes charged for the message in it. */
  readonly charged: Int32Array;
  private readonly classBase: number[] = [];   // byte offset of class k, relative to base
  private readonly classFirst: number[] = [];  // first global slot of class k
  private readonly classSlots: number[] = [];
  // Per class: slots never used yet are handed out in order (fresh[k] counts them), and
  // freed slots go on a stack that grows on demand; so an idle peer costs no memory here.
  private readonly fresh: number[] = [];
  private readonly freeStacks: number[][] = [];

  constructor(base: number, maxMessages: number, maxBytes: number, largestCharge: number) {
    this.base = base;
    let offset = 0;
    let first = 0;
    for (let k = 0; ; k++) {
      const size = SLICE_MIN_BYTES << k;
      const slots = k === 0
        ? maxMessages
        : Math.min(maxMessages, Math.floor(maxBytes / ((SLICE_MIN_BYTES << (k - 1)) + 8)));
      this.classBase.push(offset);
      this.classFirst.push(first);
      this.classSlots.push(slots);
      this.fresh.push(0);
      this.freeStacks.push([]);
      offset += slots * size;
      first += slots;
      if (size >= largestCharge || slots === 0) break;
    }
    this.totalBytes = offset;
    this.state = new Uint8Array(first);
    this.charged = new Int32Array(first);
  }

  /** Bytes of pool needed for the given limits (to size the IN buffer before building the Pool). */
  static bytesFor(maxMessages: number, maxBytes: number, largestCharge: number): number {
    return new Pool(0, maxMessages, maxBytes, largestCharge).totalBytes;
  }

  private classOf(charge: number): number {
    // Smallest k with SLICE_MIN_BYTES << k >= charge.
    return charge <= SLICE_MIN_BYTES ? 0 : 32 - Math.clz32((charge - 1) >>> 6);
  }

  /** The class of a global slot; most slots are small, so search upwards. */
  private classOfSlot(slot: number): number {
    const first = this.classFirst;
    let k = 0;
    while (k + 1 < first.length && first[k + 1] <= slot) k++;
    return k;
  }

  /** A free slot for `charge` bytes, now QUEUED, or -1 (which accounting must make impossible). */
  alloc(charge: number): number {
    const k = this.classOf(charge);
    if (k >= this.freeStacks.length) return -1;
    const stack = this.freeStacks[k];
    let i: number;
    if (stack.length > 0) i = stack.pop()!;
    else if (this.fresh[k] < this.classSlots[k]) i = this.fresh[k]++;
    else return -1;
    const slot = this.classFirst[k] + i;
    this.state[slot] = SLOT_QUEUED;
    this.charged[slot] = charge;
    return slot;
  }

  free(slot: number): void {
    const k = this.classOfSlot(slot);
    this.state[slot] = SLOT_FREE;
    this.charged[slot] = 0;
    this.freeStacks[k].push(slot - this.classFirst[k]);
  }

  /** Absolute byte offset of a slot in the IN buffer. */
  offsetOf(slot: number): number {
    const k = this.classOfSlot(slot);
    return this.base + this.classBase[k] + (slot - this.classFirst[k]) * (SLICE_MIN_BYTES << k);
  }

  /** The slot starting at absolute `offset`, or -1 if no slot starts there (untrusted input). */
  slotAt(offset: number): number {
    if (!Number.isInteger(offset)) return -1;
    const rel = offset - this.base;
    if (rel < 0 || rel >= this.totalBytes) return -1;
    const bases = this.classBase;
    let k = 0;
    while (k + 1 < bases.length && bases[k + 1] <= rel) k++;
    const size = SLICE_MIN_BYTES << k;
    const within = rel - this.classBase[k];
    if (within % size !== 0) return -1;
    const i = within / size;
    if (i >= this.classSlots[k]) return -1;
    return this.classFirst[k] + i;
  }
}
