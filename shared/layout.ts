/*
 * Memory layouts and wire formats, in one place. Both sides of every ring import this.
 *
 * Each peer owns two SharedArrayBuffers, and the pool segments made for it, and sees no
 * other peer's memory. Its CONTROL BLOCK (CONTROL_BYTES, below) is a buffer of its own:
 * small and of fixed size, so V8 takes it from the allocator's heap rather than mapping
 * pages for it. Its other buffer has two regions, OUT and IN, reserved address space
 * whose pages cost memory only once written. Nothing writes them while the peer idles:
 * the coordinator does not raise a new peer's OUT flag (its first publish rings anyway:
 * src/coordinator/bells.ts assignBell), and the words written at creation, at open and at
 * the first publish (CTL_BELL, CTL_OPENED, CTL_PUBLISHED) are in the control block. Nor
 * does the coordinator read an idle peer's rings: a first read of an untouched page is a
 * page fault too. An idle peer that waits in recv() writes its descriptor ring's
 * sleeping flag, and so touches that header's page.
 *
 *   +--------------------+-------------------------------+
 *   | OUT ring header    | OUT ring data                 |  ...
 *   | 256 B              | framed request records        |
 *   +--------------------+-------------------------------+
 *     ... +----------------+---------------------+--------------------+-------------+------------+
 *         | verdict ring   | verdict slots       | descriptor ring    | descriptor  | first pool |
 *         | header 256 B   | VERDICT_SLOTS x 64B | header 256 B       | slots x 32B | segment    |
 *         +----------------+---------------------+--------------------+-------------+------------+
 *
 *   OUT (the OUT ring: the peer writes, the coordinator reads; everything in it is untrusted)
 *   IN  (everything else: the coordinator writes, the peer reads)
 *
 *   POOL SEGMENTS (the coordinator writes, the peer reads): the receive pool is an
 *   address space (src/coordinator/pool.ts) whose SEGMENT_BYTES-aligned windows get
 *   memory on first use. The window at address 0 (at most SEGMENT_BYTES) is the tail of
 *   IN; every other one is a SharedArrayBuffer of its own, posted to the peer on its
 *   ticket's port as { segment: address, sab } before any descriptor names it. A
 *   descriptor's offset (and a slice release) is a pool address, not a byte of IN.
 *
 * One more buffer, the DOORBELL, is shared by the coordinator, the owner and every peer:
 *   byte   0: counter            bumped and notified by a peer that rings its bell, and by the owner
 *   byte 128: control-pending    set by the owner after posting a control request
 *   byte 256: bells              one bit per peer (its bell index, CTL_BELL): "my OUT ring
 *                                has new records and you told me you stopped polling it"
 * A hostile peer can only cause spurious wake-ups or polls through it: the coordinator
 * trusts no word of it, and only ever looks at a peer's own OUT ring because of a bit.
 * A bit it clears (another peer's ring) is found by the coordinator's sweep, which looks
 * at every unpolled ring that has published (CTL_PUBLISHED) within SWEEP_PERIOD_MS
 * (Coordinator.sweep).
 *
 * Ring header (shared/ring.ts), each word on its own 64-byte cache line so that producer
 * and consumer never write the same line:
 *   byte   0: head     free-running u32, written only by the producer
 *   byte  64: tail     free-running u32, written only by the consumer
 *   byte 128: consumer-sleeping flag, written only by the consumer
 *   byte 192: producer-sleeping flag, written only by the producer
 */

export const CACHE_LINE = 64;
export const RING_HEADER_BYTES = 256;
export const RING_HEAD = 0;          // Int32 index of head
export const RING_TAIL = 16;         // Int32 index of tail
export const RING_CONSUMER_SLEEPING = 32;
export const RING_PRODUCER_SLEEPING = 48;

// ---- Byte ring records (OUT): [u32 bodyBytes][u32 op][body, padded to 8] -------------
export const RECORD_HEADER_BYTES = 8;
/** bodyBytes value that marks "skip to the start of the ring". */
export const RECORD_WRAP = 0xffffffff;

/** Request operations a peer writes into its OUT ring. Every body starts with u32 reqId (0 = no verdict). */
export const OP_SEND = 1;            // reqId, flags, ndest, nhandles, payloadBytes, 0, dest[ndest], handles[nhandles], pad8, payload
export const OP_CREATE_NODE = 2;     // reqId
export const OP_RELEASE_HANDLE = 3;  // reqId, handle
export const OP_RELEASE_SLICE = 4;   // 0, pool offset
export const OP_DESTROY_NODES = 5;   // reqId, n, handles[n]
export const OP_QUERY = 6;           // reqId
export const OP_CLOSE = 7;           // reqId
export const OP_RELEASE_SLICES = 8;  // 0, n, pool offset[n]   (what a Peer writes: releases go in batches)
export const OP_RESUME = 9;          // 0    (flush(): posts after this one are attempted again)
export const OP_WAIT = 10;           // 0, uid, flags (WAIT_*): a waiting send was refused by uid; wake me (CTL_WAKE) when it gives back
export const OP_PAD = 11;            // any body, skipped: fills the OUT ring to its end before a record too large to follow a wrap (shared/ring.ts)
export const OP_MAX = 11;
/** Slice releases a peer gathers into one record. */
export const RELEASE_BATCH = 64;

/** Words before the id lists of an OP_SEND body. */
export const SEND_HEADER_WORDS = 6;
/** OP_SEND flags. */
export const SEND_FLAG_PARTIAL = 1;  // multicast: deliver to those that accept, report the others
/** A post(): once one is refused, later ones are refused too until OP_RESUME, so what is delivered is always a prefix. */
export const SEND_FLAG_STREAM = 2;
/** A waiting send (src/waiting.ts): an EDQUOT refusal is remembered for its OP_WAIT, and success hands the turn on. */
export const SEND_FLAG_WAIT = 4;
/**
 * The top 8 bits of the flags are the everyday layer's tag (value kind, request, subscribe:
 * src/values.ts). The coordinator copies them unread into the descriptor's kind word, at
 * the same bits; the receiver validates what they claim.
 */
export const TAG_SHIFT = 24;
export const TAG_MASK = 0xff000000 | 0;
/** OP_WAIT flags: re-queue at the front (a woken waiter refused again), or give up the turn. */
export const WAIT_FRONT = 1;
export const WAIT_CANCEL = 2;

// ---- Control block (its own buffer, CONTROL_BYTES; Int32 indices) ------------------------
export const CTL_STATE = 0;          // PeerState, written by the coordinator (and by close())
export const CTL_OPENED = 1;         // 0 until Peer.open() claims the ticket (CAS)
export const CTL_REASON = 2;         // why the coordinator disconnected the peer (DisconnectReason)
export const CTL_ACKED = 16;         // last processed reqId (u32), byte 64; the peer waits on it
export const CTL_ACK_WAITING = 32;   // the peer sleeps on CTL_ACKED, byte 128
export const CTL_BELL = 3;           // the peer's bit in the doorbell's bell map, written by the coordinator at creation
/**
 * Set to 1 by the peer before it rings for its first publish, never cleared: until then the
 * coordinator's sweep does not read the peer's OUT ring, whose page nothing has touched
 * (a first read of it is a page fault, 20-25 us in this VM; src/coordinator/bells.ts sweep).
 */
export const CTL_PUBLISHED = 4;
export const CTL_WAKE = 48;          // bumped (and notified) by the coordinator to wake this peer's waiting sends, byte 192
export const CONTROL_BYTES = 256;

// ---- Doorbell (Int32 indices) -------------------------------------------------------------
export const BELL_COUNTER = 0;
export const BELL_CONTROL = 32;
/** The coordinator's wake-ups so far (shared/wait.ts wakesSoFar), written by it alone; read by perf/wakes.ts. */
export const BELL_WAKES = 48;
/**
 * Spin slots (shared/wait.ts Spinner): one owner word per slot from here (up to 4), then
 * one beat word per slot. Advice only, never trusted.
 */
export const BELL_SPIN_SLOTS = 40;
export const BELL_MAP = 64;
/** Peers that can have a bell of their own at once; later ones are polled every round. */
export const MAX_BELLS = 1 << 16;
export const DOORBELL_BYTES = 4 * BELL_MAP + MAX_BELLS / 8;
/** CTL_BELL of a peer without a bell (it is always polled and never rings). */
export const NO_BELL = -1;

export const STATE_OPEN = 0;
export const STATE_CLOSED = 1;        // the peer closed itself
export const STATE_DISCONNECTED = 2;  // the coordinator cut it off (bad input, or its thread died)
export const STATE_BUS_CLOSED = 3;    // bus.close()

export const REASON_NONE = 0;
export const REASON_PROTOCOL = 1;     // garbage in its OUT ring
export const REASON_THREAD_EXIT = 2;  // its thread exited, was terminated or crashed

// ---- Verdict ring (IN): 64-byte slots ---------------------------------------------------
// [u32 reqId][u32 code][u32 resource][u32 detail][f64 v0..v5]
// Written only for requests that failed or that return values (createNode, query).
export const VERDICT_SLOT_BYTES = 64;
export const VERDICT_SLOTS = 2048;  // >= MAX_DESTINATIONS + 1: a partial multicast's refusals always fit
export const V_REQ = 0, V_CODE = 1, V_RESOURCE = 2, V_DETAIL = 3; // Int32 indices within a slot
export const V_VALUES_F64 = 2;                                     // Float64 index of v0 within a slot

// ---- Descriptor ring (IN): 32-byte slots -----------------------------------------------
// [u32 kind | continue<<4 | nhandles<<8 | tag<<24][u32 destination][f64 seq][f64 senderUid][u32 offset][u32 bytes]
export const DESC_SLOT_BYTES = 32;
export const D_KIND = 0, D_DEST = 1, D_OFFSET = 6, D_BYTES = 7;    // Int32 indices within a slot
export const D_SEQ_F64 = 1, D_UID_F64 = 2;                         // Float64 indices within a slot
export const KIND_DATA = 1;
export const KIND_NODE_DESTROY = 2;
export const KIND_NODE_RELEASE = 3;
/** A node-release withdrawn before the owner read it; the peer skips it. */
export const KIND_CANCELLED = 4;
/** A node-release the peer has claimed (CAS from KIND_NODE_RELEASE), so it can no longer be withdrawn. */
export const KIND_CLAIMED = 5;
export const KIND_MASK = 0xf;
export const DESC_CONTINUE = 0x10;
export const DESC_NHANDLES_SHIFT = 8;
export const DESC_NHANDLES_MASK = 0xffff;

export const INVALID_HANDLE = 0;

// ---- Pool segments -------------------------------------------------------------------------
/** A pool segment covers whole granules of 1 << SEGMENT_SHIFT bytes of pool address space (larger ones: several). */
export const SEGMENT_SHIFT = 16;
export const SEGMENT_BYTES = 1 << SEGMENT_SHIFT;

// ---- Limits of one message ---------------------------------------------------------------
export const MAX_DESTINATIONS = 1024;
export const MAX_HANDLES_PER_MESSAGE = 4096;
export const DEFAULT_MAX_MESSAGE_BYTES = 1 << 20;

export function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Pool bytes a message occupies and is charged for: payload, then its handle ids, aligned. */
export function messageBytes(payloadBytes: number, handles: number): number {
  return align8(payloadBytes + 4 * handles);
}

export function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Bytes of a peer's OUT ring: the smallest power of two that holds the largest send as
 * one record (ByteRingWriter.maxBody, the whole ring less a record header). It is
 * reserved by every peer, idle or not, so it is no larger than that; a sender of the
 * largest messages has one in the ring at a time, one of 64 KiB some fifteen.
 */
/**
 * The smallest OUT ring: with small maxima (a bus of small messages) the ring would
 * otherwise hold few records, and a sender would wait for the coordinator every few dozen
 * posts (measured: 1 KiB streams a third slower with 64 KiB rings than with 128-256 KiB).
 * A sender that outruns the coordinator sleeps until half the ring is free, and that wake
 * costs the coordinator, the bus's busiest thread, a futex call (10-15 us here): with
 * 1 MiB instead of 256 KiB, a 1 KiB stream's coordinator spent 250 instead of 320-360 ns
 * a message, and the stream ran at 3.4-3.6 instead of 2.3-2.7 M msg/s (December 2026).
 * Untouched pages cost no memory, so an idle peer pays only address space for it.
 */
export const MIN_OUT_RING_BYTES = 1 << 20;

export function outRingBytes(maxMessageBytes: number): number {
  const largest = RECORD_HEADER_BYTES + 4 * (SEND_HEADER_WORDS + MAX_DESTINATIONS + MAX_HANDLES_PER_MESSAGE) + maxMessageBytes + 8;
  return Math.max(MIN_OUT_RING_BYTES, nextPow2(largest));
}

/** Descriptor slots: every message the peer may hold, plus room for notifications (the rest overflow in the coordinator). */
export function descriptorSlots(maxMessages: number): number {
  return nextPow2(maxMessages + 1024);
}

export interface PeerLayout {
  outOffset: number;
  outRingBytes: number;
  verdictOffset: number;
  descriptorOffset: number;
  descriptorSlots: number;
  poolOffset: number;
  poolBytes: number;
  totalBytes: number;
}

/** The peer's buffer (drawn at the top). `poolBytes`: the first pool segment's (src/coordinator/pool.ts firstSegmentBytes). */
export function peerLayout(ringBytes: number, descSlots: number, poolBytes: number): PeerLayout {
  const outOffset = 0;
  const verdictOffset = outOffset + RING_HEADER_BYTES + ringBytes;
  const descriptorOffset = verdictOffset + RING_HEADER_BYTES + VERDICT_SLOTS * VERDICT_SLOT_BYTES;
  const poolOffset = descriptorOffset + RING_HEADER_BYTES + descSlots * DESC_SLOT_BYTES;
  return {
    outOffset, outRingBytes: ringBytes, verdictOffset, descriptorOffset, descriptorSlots: descSlots, poolOffset,
    poolBytes, totalBytes: poolOffset + poolBytes,
  };
}
