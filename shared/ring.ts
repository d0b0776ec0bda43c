/*
 * Single-producer single-consumer rings in a SharedArrayBuffer.
 *
 * Two shapes share one header (shared/layout.ts):
 *   - ByteRing: variable-length framed records [u32 bodyBytes][u32 op][body padded to 8].
 *     A record never straddles the end: when it does not fit, the producer writes a WRAP
 *     marker and starts again at offset 0. A record may be as large as the whole ring
 *     (less its header); one too large to follow a wrap marker from where the ring is
 *     (the marker and it would need more than the ring) is preceded instead by an
 *     ordinary record of op OP_PAD that fills the ring to its end, which the consumer
 *     skips, and which the producer publishes at once (its consumer must take it before
 *     the large record can fit). Used for a peer's requests (OUT).
 *   - SlotRing: fixed-size slots, indexed by record count. Used for descriptors and verdicts.
 *
 * Invariants:
 *   - head and tail are free-running u32 counters (bytes for ByteRing, slots for SlotRing);
 *     used = (head - tail) >>> 0 is always <= capacity, and capacity is a power of two.
 *   - Only the producer writes head and the record bytes between tail and head+capacity;
 *     only the consumer writes tail. Data is written before head is published with
 *     Atomics.store, and read after head is loaded with Atomics.load, so a record is
 *     never read half-written.
 *   - The reader side never trusts the producer: every length and position it reads is
 *     bounds-checked, and a bad one makes read() report RING_CORRUPT instead of throwing
 *     or reading outside the ring.
 *
 * Batching: producers may write several records and publish them with one commit();
 * consumers may consume several and release them with one release(). commit() and
 * release() return true when the other side said it sleeps, so that the caller pays for
 * a notify only then (or routes the wake-up elsewhere, such as the coordinator doorbell).
 */

import {
  RING_HEADER_BYTES, RING_HEAD, RING_TAIL, RING_CONSUMER_SLEEPING, RING_PRODUCER_SLEEPING,
  RECORD_HEADER_BYTES, RECORD_WRAP, OP_PAD,
} from './layout.js';
import { spinWhileEqual, sleepWhileEqual, sleepWhileEqualAsync, type WaitResult } from './wait.js';

export const RING_CORRUPT = -2;
export const RING_EMPTY = -1;

function checkCapacity(capacity: number, unit: number): void {
  if (!Number.isInteger(capacity) || capacity < unit || (capacity & (capacity - 1)) !== 0 || capacity > 2 ** 30) {
    throw new RangeError(`ring capacity must be a power of two between ${unit} and 2^30, got ${capacity}`);
  }
}

/** The header words shared by both ends and both shapes. */
class RingHeader {
  readonly ctl: Int32Array;
  constructor(sab: SharedArrayBuffer, byteOffset: number) {
    this.ctl = new Int32Array(sab, byteOffset, RING_HEADER_BYTES / 4);
  }
  /** Wake a consumer sleeping on head (e.g. at shutdown), whatever its flag says. */
  wakeConsumer(): void {
    Atomics.notify(this.ctl, RING_HEAD);
  }
  wakeProducer(): void {
    Atomics.notify(this.ctl, RING_TAIL);
  }
  loadHead(): number {
    return Atomics.load(this.ctl, RING_HEAD) >>> 0;
  }
  loadTail(): number {
    return Atomics.load(this.ctl, RING_TAIL) >>> 0;
  }
  /** Consumer side: spin, then sleep until head moves past `seenHead`. */
  waitForData(seenHead: number, timeoutMs: number): WaitResult {
    if (spinWhileEqual(this.ctl, RING_HEAD, seenHead | 0, 1000)) return 'not-equal';
    return sleepWhileEqual(this.ctl, RING_HEAD, seenHead | 0, RING_CONSUMER_SLEEPING, timeoutMs);
  }
  waitForDataAsync(seenHead: number, timeoutMs: number): Promise<WaitResult> | WaitResult {
    return sleepWhileEqualAsync(this.ctl, RING_HEAD, seenHead | 0, RING_CONSUMER_SLEEPING, timeoutMs);
  }
  /** Producer side: spin, then sleep until tail moves past `seenTail`. */
  waitForSpace(seenTail: number, timeoutMs: number): WaitResult {
    if (spinWhileEqual(this.ctl, RING_TAIL, seenTail | 0, 1000)) return 'not-equal';
    return sleepWhileEqual(this.ctl, RING_TAIL, seenTail | 0, RING_PRODUCER_SLEEPING, timeoutMs);
  }
  waitForSpaceAsync(seenTail: number, timeoutMs: number): Promise<WaitResult> | WaitResult {
    return sleepWhileEqualAsync(this.ctl, RING_TAIL, seenTail | 0, RING_PRODUCER_SLEEPING, timeoutMs);
  }
  setConsumerSleeping(on: boolean): void {
    Atomics.store(this.ctl, RING_CONSUMER_SLEEPING, on ? 1 : 0);
  }
}

// ---------------------------------------------------------------------------------------
// ByteRing

/** Producer end of a byte ring. Owned by exactly one thread. */
export class ByteRingWriter extends RingHeader {
  readonly capacity: number;
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  private head: number;          // local, unpublished head
  private tailCache: number;     // last tail seen; refreshed only when space looks short

  /** `dataOffset` = byteOffset + RING_HEADER_BYTES; capacity bytes follow it. */
  constructor(sab: SharedArrayBuffer, byteOffset: number, capacity: number) {
    super(sab, byteOffset);
    checkCapacity(capacity, 64);
    this.capacity = capacity;
    this.u8 = new Uint8Array(sab, byteOffset + RING_HEADER_BYTES, capacity);
    this.i32 = new Int32Array(sab, byteOffset + RING_HEADER_BYTES, capacity / 4);
    this.head = this.loadHead();
    this.tailCache = this.loadTail();
  }

  /** Called when reserve() published a padding record on its own (the consumer must be told to look). */
  onPadPublished: (() => void) | null = null;

  /** Largest body that can ever be written. */
  get maxBody(): number {
    return this.capacity - RECORD_HEADER_BYTES;
  }

  /**
   * Reserve a record with `bodyBytes` of body and tag it with `op`. Returns the body's
   * byte offset in u8/i32 (8-aligned), or -1 when there is no room right now.
   * The record is invisible to the consumer until commit().
   */
  reserve(bodyBytes: number, op: number): number {
    const size = RECORD_HEADER_BYTES + ((bodyBytes + 7) & ~7);
    const mask = this.capacity - 1;
    let pos = this.head & mask;
    let toEnd = this.capacity - pos;
    if (size > toEnd && toEnd + size > this.capacity) {
      // A wrap marker and this record would need more than the ring: pad to the end with
      // a record the consumer skips, and publish it, so that the record can start at 0.
      if (size > this.capacity) return -1;
      if (this.capacity - ((this.head - this.tailCache) >>> 0) < toEnd) {
        this.tailCache = this.loadTail();
        if (this.capacity - ((this.head - this.tailCache) >>> 0) < toEnd) return -1;
      }
      this.i32[pos >> 2] = toEnd - RECORD_HEADER_BYTES;
      this.i32[(pos >> 2) + 1] = OP_PAD;
      this.head = (this.head + toEnd) >>> 0;
      this.commit();
      this.onPadPublished?.();
      pos = 0;
      toEnd = this.capacity;
    }
    const need = size <= toEnd ? size : toEnd + size;
    if (this.capacity - ((this.head - this.tailCache) >>> 0) < need) {
      this.tailCache = this.loadTail();
      if (this.capacity - ((this.head - this.tailCache) >>> 0) < need) return -1;
    }
    let at = pos;
    if (size > toEnd) {
      this.i32[pos >> 2] = RECORD_WRAP | 0;
      this.head = (this.head + toEnd) >>> 0;
      at = 0;
    }
    this.i32[at >> 2] = bodyBytes;
    this.i32[(at >> 2) + 1] = op;
    this.head = (this.head + size) >>> 0;
    return at + RECORD_HEADER_BYTES;
  }

  /** Publish everything reserved so far. True when the consumer sleeps and needs a wake. */
  commit(): boolean {
    return this.commitSeen() !== 0;
  }

  /**
   * commit(), returning the consumer's sleeping word itself (0: awake). A consumer that
   * numbers its sleeps (the coordinator does: src/coordinator/bells.ts) tells the producer
   * which sleep it would wake, without a second load.
   */
  commitSeen(): number {
    Atomics.store(this.ctl, RING_HEAD, this.head | 0);
    return Atomics.load(this.ctl, RING_CONSUMER_SLEEPING);
  }

  /** Bytes the consumer has not yet released (as last seen). */
  pendingBytes(): number {
    this.tailCache = this.loadTail();
    return (this.head - this.tailCache) >>> 0;
  }

  get tailSeen(): number {
    return this.tailCache;
  }
}

/** Consumer end of a byte ring. Owned by exactly one thread; treats all contents as untrusted. */
export class ByteRingReader extends RingHeader {
  readonly capacity: number;
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  private tail: number;         // local, unreleased tail
  private headCache: number;
  /** Set by read(): the current record's body length and op. */
  bodyBytes = 0;
  op = 0;
  private next = 0;             // tail after the current record

  /**
   * `fresh`: nothing was ever consumed, so the positions start at 0 without reading the
   * header (a reader made late, when the producer may have scribbled on the tail).
   */
  constructor(sab: SharedArrayBuffer, byteOffset: number, capacity: number, fresh = false) {
    super(sab, byteOffset);
    checkCapacity(capacity, 64);
    this.capacity = capacity;
    this.u8 = new Uint8Array(sab, byteOffset + RING_HEADER_BYTES, capacity);
    this.i32 = new Int32Array(sab, byteOffset + RING_HEADER_BYTES, capacity / 4);
    this.tail = fresh ? 0 : this.loadTail();
    this.headCache = fresh ? 0 : this.loadHead();
  }

  /**
   * Look at the next record: returns its body offset (bodyBytes and op set), RING_EMPTY,
   * or RING_CORRUPT when the producer wrote something impossible. Call consume() to
   * move past it.
   */
  read(): number {
    let avail = (this.headCache - this.tail) >>> 0;
    if (avail === 0) {
      this.headCache = this.loadHead();
      avail = (this.headCache - this.tail) >>> 0;
      if (avail === 0) return RING_EMPTY;
    }
    if (avail > this.capacity || (avail & 7) !== 0) return RING_CORRUPT;
    const mask = this.capacity - 1;
    let pos = this.tail & mask;
    let len = this.i32[pos >> 2] >>> 0;
    let skipped = 0;
    if (len === RECORD_WRAP) {
      skipped = this.capacity - pos;
      if (skipped >= avail) return RING_CORRUPT;
      pos = 0;
      len = this.i32[0] >>> 0;
    }
    const size = RECORD_HEADER_BYTES + ((len + 7) & ~7);
    if (len > this.capacity || size > avail - skipped || size > this.capacity - pos) return RING_CORRUPT;
    this.bodyBytes = len;
    this.op = this.i32[(pos >> 2) + 1];
    this.next = (this.tail + skipped + size) >>> 0;
    return pos + RECORD_HEADER_BYTES;
  }

  /** Move past the record returned by the last read(). Not visible to the producer until release(). */
  consume(): void {
    this.tail = this.next;
  }

  /** Give consumed space back to the producer. True when the producer sleeps and needs a wake. */
  release(): boolean {
    Atomics.store(this.ctl, RING_TAIL, this.tail | 0);
    return Atomics.load(this.ctl, RING_PRODUCER_SLEEPING) !== 0;
  }

  /** Bytes published and not yet released (as seen by this consumer). */
  used(): number {
    return (this.loadHead() - this.tail) >>> 0;
  }

  /** True when the producer has published something not yet read. */
  hasData(): boolean {
    return this.loadHead() !== this.tail;
  }

  get tailPosition(): number {
    return this.tail;
  }
}

// ---------------------------------------------------------------------------------------
// SlotRing

/** What both ends of a fixed-slot ring see: the slots as 32- and 64-bit words. */
class SlotRingBase extends RingHeader {
  readonly slots: number;
  readonly slotBytes: number;
  readonly i32: Int32Array;
  readonly f64: Float64Array;

  constructor(sab: SharedArrayBuffer, byteOffset: number, slots: number, slotBytes: number) {
    super(sab, byteOffset);
    checkCapacity(slots, 1);
    this.slots = slots;
    this.slotBytes = slotBytes;
    this.i32 = new Int32Array(sab, byteOffset + RING_HEADER_BYTES, (slots * slotBytes) / 4);
    this.f64 = new Float64Array(sab, byteOffset + RING_HEADER_BYTES, (slots * slotBytes) / 8);
  }
}

/** Producer end of a fixed-slot ring. */
export class SlotRingWriter extends SlotRingBase {
  private head: number;
  private tailCache: number;

  /**
   * `fresh`: nothing was ever published, so the positions start at 0 without reading the
   * header (a writer made late, when the consumer may have scribbled on the head).
   */
  constructor(sab: SharedArrayBuffer, byteOffset: number, slots: number, slotBytes: number, fresh = false) {
    super(sab, byteOffset, slots, slotBytes);
    this.head = fresh ? 0 : this.loadHead();
    this.tailCache = fresh ? 0 : this.loadTail();
  }

  /** Int32 index of the next free slot, or -1 when full. The slot is published by commit(). */
  reserve(): number {
    if (((this.head - this.tailCache) >>> 0) >= this.slots) {
      this.tailCache = this.loadTail();
      if (((this.head - this.tailCache) >>> 0) >= this.slots) return -1;
    }
    const at = ((this.head & (this.slots - 1)) * this.slotBytes) >> 2;
    this.head = (this.head + 1) >>> 0;
    return at;
  }

  /** Free slots as last seen, refreshing the tail. */
  free(): number {
    this.tailCache = this.loadTail();
    return this.slots - ((this.head - this.tailCache) >>> 0);
  }

  commit(): boolean {
    Atomics.store(this.ctl, RING_HEAD, this.head | 0);
    return Atomics.load(this.ctl, RING_CONSUMER_SLEEPING) !== 0;
  }

  /** Count of slots reserved so far (free-running), i.e. the position of the next slot. */
  get position(): number {
    return this.head;
  }

  /** Int32 index of the slot at free-running position `pos`. */
  slotIndex(pos: number): number {
    return ((pos & (this.slots - 1)) * this.slotBytes) >> 2;
  }
}

/** Consumer end of a fixed-slot ring. */
export class SlotRingReader extends SlotRingBase {
  private tail: number;
  private headCache: number;

  constructor(sab: SharedArrayBuffer, byteOffset: number, slots: number, slotBytes: number) {
    super(sab, byteOffset, slots, slotBytes);
    this.tail = this.loadTail();
    this.headCache = this.loadHead();
  }

  /** Int32 index of the next unread slot, or RING_EMPTY. Call consume() after reading it. */
  read(): number {
    if (this.headCache === this.tail) {
      this.headCache = this.loadHead();
      if (this.headCache === this.tail) return RING_EMPTY;
    }
    return ((this.tail & (this.slots - 1)) * this.slotBytes) >> 2;
  }

  consume(): void {
    this.tail = (this.tail + 1) >>> 0;
  }

  release(): boolean {
    Atomics.store(this.ctl, RING_TAIL, this.tail | 0);
    return Atomics.load(this.ctl, RING_PRODUCER_SLEEPING) !== 0;
  }

  get position(): number {
    return this.tail;
  }
}
