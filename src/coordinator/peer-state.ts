/*
 * The coordinator's view of one peer (bus1 peer.c): its memory, its rings, its handle
 * table, its ledger and its queue. Coordinator thread only.
 *
 * Memory ownership (see shared/layout.ts):
 *   - OUT is written by the peer; here it is only read, through ByteRingReader, which
 *     bounds-checks everything. Nothing read from OUT is trusted.
 *   - IN is written here (verdicts, descriptors, pool slices), and so is the control
 *     block, a small buffer of its own (ctl). The peer writes back only ring tails, its
 *     sleeping flags, its control words (CTL_OPENED, CTL_ACK_WAITING, CTL_STATE at close)
 *     and the kind word of a node-release it claims; every one of those is validated
 *     before use (syncConsumed).
 *   - Pool segments beyond the first (src/coordinator/pool.ts) are written here only, and
 *     posted to this peer alone (handOver, segment-mail.ts), so no other peer ever maps them.
 *
 * The rings' ends (out, desc, verdicts) are made at their first use, so that an idle
 * peer has none of their objects and views, and its ring headers' pages are never read.
 * Made late, they start at position 0 without reading the header (shared/ring.ts,
 * `fresh`): until then this thread has consumed and published nothing there, and the
 * peer may have written anything into those words. Until the OUT reader exists, the
 * bells read its head and set its flag through inI32 (outHasData, setOutSleeping).
 *
 * The queue: every descriptor published (or held back in `overflow` while the ring is
 * full) has an entry in the private FIFO below, indexed by descriptor position, with
 * what it charged and to whom. When the peer's descriptor tail moves past an entry the
 * message counts as received (bus1 RECV): the sender's in-flight share drops (commit).
 * No message back from the peer is needed for that.
 */

import {
  CTL_STATE, CTL_ACKED, CTL_ACK_WAITING, DESC_SLOT_BYTES, VERDICT_SLOT_BYTES, VERDICT_SLOTS,
  RING_HEADER_BYTES, D_KIND, KIND_NODE_RELEASE, KIND_CANCELLED, STATE_OPEN, RING_HEAD,
  RING_TAIL, RING_CONSUMER_SLEEPING, CTL_PUBLISHED,
} from '../../shared/layout.js';
import { ByteRingReader, SlotRingWriter } from '../../shared/ring.js';
import type { Ledger } from './ledger.js';
import type { Pool, SegmentSink } from './pool.js';
import type { SegmentMail } from './segment-mail.js';
import type { BusNode as NodeOf, Handle as HandleOf } from './nodes.js';
import type { UserState as UserOf } from './users.js';
import { Counters, countReceived } from './stats.js';

/** The node graph and users as the coordinator holds them (generic in nodes.ts and users.ts, so that those modules need not import this one). */
export type BusNode = NodeOf<PeerState>;
export type Handle = HandleOf<PeerState>;
export type UserState = UserOf<PeerState>;

/** A descriptor not yet in the ring (held back because the ring was full). */
export interface PendingDescriptor {
  kindWord: number;
  destination: number;
  seq: number;
  senderUid: number;
  offset: number;
  bytes: number;
  slot: number;
  handlesCharged: number;
  handleList: Handle[] | null;
  node: BusNode | null;     // for node-release, to track its position
}

/** Descriptors that justify waking a sleeping receiver at once (else: when the coordinator idles). */
export const WAKE_BATCH = 64;
/** FIFO entries a peer gets with its first descriptor. */
const FIFO_INITIAL = 64;
/** The FIFO of a peer that has had no descriptor yet: shared, never written. */
const NO_UIDS = new Float64Array(0);
const NO_WORDS = new Int32Array(0);

export class PeerState implements SegmentSink {
  readonly id: number;
  readonly uid: number;
  readonly user: UserState;
  readonly ledger: Ledger;
  readonly inSab: SharedArrayBuffer;
  #out: ByteRingReader | null = null;
  #desc: SlotRingWriter | null = null;
  #verdicts: SlotRingWriter | null = null;
  readonly #outOffset: number;
  readonly #outRingBytes: number;
  readonly #verdictOffset: number;
  readonly #descriptorOffset: number;
  readonly #descriptorSlots: number;
  /** The control block's words (its own small buffer: shared/layout.ts). */
  readonly ctl: Int32Array;
  #outBuf: Buffer | null = null;
  #out64: BigInt64Array | null = null;
  readonly inI32: Int32Array;
  readonly pool: Pool;
  /** Where new pool segments go (set by the coordinator at createPeer). */
  mail: SegmentMail | null = null;
  /** Segments waiting for this peer's thread to be known (segment-mail.ts). */
  segmentsWaiting: Array<number | SharedArrayBuffer> | null = null;

  readonly stats = new Counters();
  readonly handles = new Map<number, Handle>();
  readonly ownedNodes = new Set<BusNode>();
  nextHandleId = 1;
  open = true;
  /** Last reqId processed, published to CTL_ACKED at the end of a batch. */
  acked = 0;
  ackDirty = false;
  descDirty = false;
  inDirtyList = false;
  /** The refusal of its first refused post since the last OP_RESUME (0: none); later posts get the same. */
  streamCode = 0;
  streamDetail = 0;
  streamResource = 0;
  streamUid = 0;
  /** Its last batch stopped because its verdict ring is full (it is not reading them). */
  stalled = false;
  /** Verdict slots known free (refreshed from the ring only when short). */
  verdictFree = 0;
  /** A descriptor was published to this sleeping peer without waking it yet. */
  wakePending = false;
  /** In the coordinator's list of deferred wake-ups. */
  inWakeList = false;
  /** Its bit in the doorbell's bell map (NO_BELL: polled every round). */
  bell = 0;
  /** In the coordinator's polled list (its OUT flag is down: it does not ring). */
  polled = false;
  /** Empty polls since its bell last rang (not in a row: bells.ts IDLE_POLLS). */
  idlePolls = 0;
  verdictDirty = false;

  // The private FIFO, by descriptor position & fifoMask. It starts small and doubles
  // (up to the ring's slot count) while more descriptors are outstanding, so an idle
  // peer does not pay for the largest queue its limits allow.
  // A peer that never received anything has none (mask -1: capacity 0).
  private fifoMask = -1;
  private readonly fifoMax: number;
  fifoUid = NO_UIDS;
  fifoSlot = NO_WORDS;          // -1: a notification (charges nothing)
  fifoHandles = NO_WORDS;       // handles charged in flight
  /** Handles carried by queued messages, by descriptor position (only messages that carry any); made at the first. */
  #handleLists: Map<number, Handle[]> | null = null;
  /** Descriptor position up to which receipt has been accounted. */
  syncedTail = 0;
  readonly overflow: PendingDescriptor[] = [];

  constructor(args: {
    id: number; uid: number; user: UserState; ledger: Ledger; inSab: SharedArrayBuffer; ctlSab: SharedArrayBuffer;
    outOffset: number; outRingBytes: number; verdictOffset: number; descriptorOffset: number; descriptorSlots: number;
    pool: Pool; poolOffset: number;
  }) {
    this.id = args.id;
    this.uid = args.uid;
    this.user = args.user;
    this.ledger = args.ledger;
    this.inSab = args.inSab;
    this.#outOffset = args.outOffset;
    this.#outRingBytes = args.outRingBytes;
    this.#verdictOffset = args.verdictOffset;
    this.#descriptorOffset = args.descriptorOffset;
    this.#descriptorSlots = args.descriptorSlots;
    this.inI32 = new Int32Array(args.inSab, 0, args.inSab.byteLength >> 2);
    this.ctl = new Int32Array(args.ctlSab);
    this.pool = args.pool;
    args.pool.attach(args.inSab, this.inI32, args.poolOffset, this);
    const slots = args.descriptorSlots;
    this.fifoMax = slots;
  }

  /** OUT's reader: this thread is the ring's single consumer. */
  get out(): ByteRingReader {
    return this.#out ??= new ByteRingReader(this.inSab, this.#outOffset, this.#outRingBytes, true);
  }

  /** Something was ever published to this peer (its descriptor ring's writer exists). */
  get hasDescriptors(): boolean {
    return this.#desc !== null;
  }

  get desc(): SlotRingWriter {
    return this.#desc ??= new SlotRingWriter(this.inSab, this.#descriptorOffset, this.#descriptorSlots, DESC_SLOT_BYTES, true);
  }

  get verdicts(): SlotRingWriter {
    return this.#verdicts ??= new SlotRingWriter(this.inSab, this.#verdictOffset, VERDICT_SLOTS, VERDICT_SLOT_BYTES, true);
  }

  /**
   * `out.hasData()` without making the reader: one that does not exist has consumed nothing.
   * Nor is the ring read before the peer says in its control block that it has published
   * (CTL_PUBLISHED): the first read of an untouched page costs a page fault (20-25 us here),
   * and the sweep would pay one for every idle peer.
   */
  outHasData(): boolean {
    if (this.#out !== null) return this.#out.hasData();
    // The first poll makes the reader: this is read only between the peer's word and that poll.
    if (Atomics.load(this.ctl, CTL_PUBLISHED) === 0) return false;
    return Atomics.load(this.inI32, (this.#outOffset >> 2) + RING_HEAD) !== 0;
  }

  /** Set OUT's consumer-sleeping flag (Bells), without making the reader. */
  setOutSleeping(value: number): void {
    Atomics.store(this.inI32, (this.#outOffset >> 2) + RING_CONSUMER_SLEEPING, value);
  }

  /**
   * A Buffer view of OUT's data for payload copies (Node 20's Buffer.copy still makes a
   * view of its source per call): made at the first send, so a peer that never sends has none.
   */
  get outBuf(): Buffer {
    return this.#outBuf ??= Buffer.from(this.out.u8.buffer, this.out.u8.byteOffset, this.out.u8.byteLength);
  }

  /** OUT's data as 64-bit words, for small payload copies (made at the first, like outBuf). */
  get out64(): BigInt64Array {
    return this.#out64 ??= new BigInt64Array(this.out.u8.buffer, this.out.u8.byteOffset, this.out.u8.byteLength >> 3);
  }

  /** SegmentSink: a new pool segment goes to this peer, through its thread's watch (segment-mail.ts). */
  handOver(address: number, sab: SharedArrayBuffer): void {
    this.mail!.send(this, address, sab);
  }

  /** Int32 index into inI32 of the descriptor at free-running position `pos`. */
  descWord(pos: number): number {
    return (this.descBase >> 2) + this.desc.slotIndex(pos);
  }

  private get descBase(): number {
    return this.desc.ctl.byteOffset + RING_HEADER_BYTES;
  }

  get fifoHandleList(): Map<number, Handle[]> {
    return this.#handleLists ??= new Map();
  }

  get fifoCapacity(): number {
    return this.fifoMask + 1;
  }

  fifoIndex(pos: number): number {
    return pos & this.fifoMask;
  }

  /** Make room in the FIFO for the descriptor at `pos` (outstanding ones keep their place). */
  ensureFifo(pos: number): void {
    const outstanding = (pos - this.syncedTail) >>> 0;
    if (outstanding <= this.fifoMask || this.fifoMask + 1 >= this.fifoMax) return;
    let cap = Math.max(FIFO_INITIAL, (this.fifoMask + 1) * 2);
    while (cap <= outstanding && cap < this.fifoMax) cap *= 2;
    const mask = cap - 1;
    const uid = new Float64Array(cap);
    const slot = new Int32Array(cap);
    const handles = new Int32Array(cap);
    for (let p = this.syncedTail; p !== pos; p = (p + 1) >>> 0) {
      const from = p & this.fifoMask;
      const to = p & mask;
      uid[to] = this.fifoUid[from];
      slot[to] = this.fifoSlot[from];
      handles[to] = this.fifoHandles[from];
    }
    this.fifoUid = uid;
    this.fifoSlot = slot;
    this.fifoHandles = handles;
    this.fifoMask = mask;
  }

  /**
   * Account for every descriptor the peer has consumed since the last call (bus1 RECV).
   * Returns false when the peer's tail is impossible (moved backwards or past what was
   * published): a protocol violation.
   */
  syncConsumed(): boolean {
    // Nothing published yet: any tail but 0 is impossible.
    if (this.#desc === null) return Atomics.load(this.inI32, (this.#descriptorOffset >> 2) + RING_TAIL) === 0;
    const tail = Atomics.load(this.desc.ctl, RING_TAIL) >>> 0;
    if (tail === this.syncedTail) return true;
    const published = this.desc.position;
    const advanced = (tail - this.syncedTail) >>> 0;
    const outstanding = (published - this.syncedTail) >>> 0;
    if (advanced > outstanding) return false;
    // Consecutive receipts from one uid are committed together: two ledger updates per
    // run of messages rather than per message.
    let runUid = -1, runM = 0, runH = 0, runB = 0;
    for (let pos = this.syncedTail; pos !== tail; pos = (pos + 1) >>> 0) {
      const i = pos & this.fifoMask;
      const slot = this.fifoSlot[i];
      if (slot >= 0) {
        const uid = this.fifoUid[i];
        if (uid !== runUid) {
          if (runM !== 0) this.commitRun(runUid, runM, runH, runB);
          runUid = uid;
          runM = runH = runB = 0;
        }
        runM++;
        runH += this.fifoHandles[i];
        runB += this.pool.receive(slot);
        const lists = this.#handleLists;
        if (lists !== null && lists.size > 0) {
          const list = lists.get(pos);
          if (list !== undefined) {
            for (const handle of list) handle.refsInFlight--;
            lists.delete(pos);
          }
        }
      }
    }
    if (runM !== 0) this.commitRun(runUid, runM, runH, runB);
    this.syncedTail = tail;
    return true;
  }

  private commitRun(uid: number, m: number, h: number, b: number): void {
    this.user.ledger.commit(uid, m, h, b);
    this.ledger.commit(uid, m, h, b);
    countReceived(this, m, b);
  }

  /** Withdraw an unread node-release (bus1: cancelled when a new holder appears first). */
  cancelRelease(node: BusNode): void {
    if (node.releaseOverflow !== null) {
      node.releaseOverflow.kindWord = KIND_CANCELLED;
      node.releaseOverflow = null;
    }
    const pos = node.releasePosition;
    if (pos < 0) return;
    // A release position means a descriptor was published: the writer exists.
    node.releasePosition = -1;
    // Only a descriptor the peer has not consumed may be withdrawn; a consumed slot may
    // already hold another descriptor. The slot cannot be reused while we look, since
    // only this thread writes descriptors.
    const tail = Atomics.load(this.desc.ctl, RING_TAIL) >>> 0;
    if (((pos - tail) >>> 0) >= ((this.desc.position - tail) >>> 0)) return;
    // The peer may claim it concurrently; whoever swaps the kind word first wins.
    Atomics.compareExchange(this.inI32, this.descWord(pos) + D_KIND, KIND_NODE_RELEASE, KIND_CANCELLED);
  }

  /** Publish descriptors, verdicts and the ack written during a batch; wake the peer if it sleeps. */
  publish(): void {
    this.inDirtyList = false;
    if (this.descDirty) {
      this.descDirty = false;
      // A sleeping receiver is woken once WAKE_BATCH descriptors wait for it, or when the
      // coordinator runs out of work (wakeIfPending), whichever comes first: a futex wake
      // costs far more than the few descriptors a receiver reads in the meantime.
      if (this.desc.commit()) {
        if (this.unread() >= WAKE_BATCH) this.desc.wakeConsumer();
        else this.wakePending = true;
      }
    }
    if (this.verdictDirty) {
      this.verdictDirty = false;
      this.verdicts.commit();
    }
    if (this.ackDirty) {
      this.ackDirty = false;
      Atomics.store(this.ctl, CTL_ACKED, this.acked | 0);
      if (Atomics.load(this.ctl, CTL_ACK_WAITING) !== 0) Atomics.notify(this.ctl, CTL_ACKED);
    }
  }

  /** Descriptors published and not yet consumed. */
  unread(): number {
    return (this.desc.position - (Atomics.load(this.desc.ctl, RING_TAIL) >>> 0)) >>> 0;
  }

  /** Deliver a wake-up deferred by publish(). */
  wakeIfPending(): void {
    if (!this.wakePending) return;
    this.wakePending = false;
    if (Atomics.load(this.desc.ctl, RING_CONSUMER_SLEEPING) !== 0) this.desc.wakeConsumer();
  }

  /** Mark the peer shut down and wake every wait it may be in. */
  shutDown(state: number, reason: number): void {
    this.open = false;
    Atomics.store(this.ctl, 2, reason);
    if (Atomics.load(this.ctl, CTL_STATE) === STATE_OPEN) Atomics.store(this.ctl, CTL_STATE, state);
    Atomics.notify(this.ctl, CTL_ACKED);
    // Through inI32: the same words, without making rings that nobody waits on.
    Atomics.notify(this.inI32, (this.#descriptorOffset >> 2) + RING_HEAD);
    Atomics.notify(this.inI32, (this.#outOffset >> 2) + RING_TAIL);
  }
}
