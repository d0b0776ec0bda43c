/*
 * Outbox: a peer's send path (bus1 peer.c, the writing half). Peer thread only;
 * module-private (Peer holds it in a # field).
 *
 * This thread is the single producer of its OUT ring; the coordinator is its single
 * consumer. Every request is one record, framed by the ring (shared/ring.ts); every
 * request that can fail carries a reqId from PeerLink.takeReq(), in order.
 *
 * Backpressure: when the ring is full, records wait in `backlog` (in order; every later
 * record queues behind them) until the coordinator frees space; the request pump
 * (acks.ts) moves them in. post() and synchronous requests wait for space instead
 * (Acks.blockForSpace), with a timeout.
 *
 * The bell: every record is published (committed) as it is written; the coordinator's
 * bell is rung when the coordinator asked for it (it stopped polling this ring). Only a
 * send() in a burst (the request pump's deferBell) may leave the bell owed, for records
 * of at most an eighth of the ring (BELL_DEFER_SHIFT), never while a send has to wait for
 * space, and never past the burst's end or a blocking wait of this thread (ringOwed()); a
 * bell owed past that only delays, since the coordinator's waits time out and it sweeps
 * rings nobody rang for.
 *
 * reserve(): an open reservation (resAt >= 0) holds the ring's uncommitted end, so
 * nothing may be committed until postReserved()/cancelReserved(): every other request
 * fails with EBUSY (assertOpen) and queued records stay queued.
 *
 * Owns: the OUT ring writer, the backlog, the reservation, the bell owed. Reads the other parts only
 * through `acks` and `releases`, set once by Peer (interfaces, so this module imports
 * neither).
 */

import {
  RING_CONSUMER_SLEEPING, CTL_PUBLISHED, OP_SEND, SEND_FLAG_STREAM, SEND_HEADER_WORDS, MAX_DESTINATIONS, MAX_HANDLES_PER_MESSAGE, align8, TAG_SHIFT,
} from '../../shared/layout.js';
import { ByteRingWriter } from '../../shared/ring.js';
import { BusError } from '../errors.js';
import type { HandleId } from '../message.js';
import type { PeerTicket } from '../ticket.js';
import { encodeValue, VALUE_STRING } from '../values.js';
import { type PeerLink, shutdown, invalid, checkHandleId } from './link.js';

/** How long a synchronous request (createNode, releaseHandle) or a blocked post() waits for the coordinator. */
export const SYNC_TIMEOUT_MS = 30_000;

/**
 * How much of the OUT ring a burst's sends may fill while they owe the bell: capacity >>
 * BELL_DEFER_SHIFT bytes (128 KiB of the smallest ring, 1 MiB: about 1300 sends of 64
 * bytes). In bytes, so that large records never fill the ring before the coordinator is rung.
 */
const BELL_DEFER_SHIFT = 3;

const EMPTY_PAYLOAD = new Uint8Array(0);

/** What the send path needs of the request pump (src/peer/acks.ts). */
export interface OutboxAcks {
  /** Block until the coordinator frees OUT space (or throw ESHUTDOWN at the deadline). */
  blockForSpace(deadline: number, what: string): void;
  /** Make sure the pump runs: it moves the backlog in as space frees. */
  schedulePump(): void;
  /** The post() stream: refuse() a post behind a known refusal, as the coordinator would (src/peer/post-stream.ts). */
  readonly posts: { refuse(reqId: number): boolean };
  /** A post was written: the id flush() waits for. */
  notePost(reqId: number): void;
}

/** What the send path needs of the receive side (src/peer/inbox.ts). */
export interface OutboxReleases {
  /** Write the pending release batch (it must precede any other request). */
  flushReleases(): void;
}

export class Outbox {
  readonly out: ByteRingWriter;
  readonly #outBuf: Buffer;
  readonly #link: PeerLink;
  readonly backlog: Array<{ op: number; body: Uint8Array }> = [];
  acks!: OutboxAcks;
  releases!: OutboxReleases;
  /** Payload offset in the OUT ring of the open reservation (-1: none), its record's word and its reqId. */
  resAt = -1;
  /** The consumer-sleeping number the bell was last rung for (see commit()). */
  #rungFor = 0;
  /**
   * Nothing published yet. The coordinator does not raise a new peer's flag (that would
   * write a page of an idle peer's buffer: src/coordinator/bells.ts assignBell), so the
   * first publish rings whatever the flag says.
   */
  #fresh = true;
  /**
   * Set by the request pump while the user is sending in a burst (acks.ts): a send's commit
   * may then leave the bell unrung (see commitSend()).
   */
  deferBell = false;
  /** Bytes of the sends committed since the coordinator asked for a bell that has not been rung. */
  #bellOwed = 0;
  readonly #bellDeferBytes: number;
  #resRecord = 0;
  resReq = 0;
  /** The last single destination found to be a valid handle id (0: none). */
  #checkedTo = 0;

  constructor(m: Pick<PeerTicket, 'inSab' | 'outOffset' | 'outRingBytes'>, link: PeerLink) {
    this.#link = link;
    this.out = new ByteRingWriter(m.inSab, m.outOffset, m.outRingBytes);
    // A padding record is published on its own (shared/ring.ts): the coordinator must poll this ring to take it.
    this.out.onPadPublished = () => link.kick();
    this.#outBuf = Buffer.from(m.inSab, this.out.u8.byteOffset, m.outRingBytes);
    this.#bellDeferBytes = m.outRingBytes >> BELL_DEFER_SHIFT;
  }

  assertOpen(what: string): void {
    if (!this.#link.isOpen()) throw shutdown(what);
    if (this.resAt >= 0) throw new BusError('EBUSY', `${what}: a reserved message is still open; postReserved() or cancelReserved() it first`);
  }

  /** Write (or queue behind the backlog) one small record; the body starts with its reqId. */
  writeRecord(op: number, body: Uint8Array): void {
    this.releases.flushReleases();
    this.#writeBytes(op, body);
  }

  #writeBytes(op: number, body: Uint8Array): void {
    const at = this.#reserveNow(body.byteLength, op);
    if (at >= 0) {
      this.out.u8.set(body, at);
      this.commit();
    } else {
      this.#queue(op, body.slice());
    }
  }

  /**
   * #writeBytes of the first `words` words of `src` (the release batch), copied word
   * by word: no view of the batch and no set() call per record.
   */
  writeWords(op: number, src: Int32Array, words: number): void {
    const at = this.#reserveNow(4 * words, op);
    if (at >= 0) {
      const i32 = this.out.i32;
      const w = at >> 2;
      for (let i = 0; i < words; i++) i32[w + i] = src[i];
      this.commit();
    } else {
      this.#queue(op, new Uint8Array(src.buffer, src.byteOffset, 4 * words).slice());
    }
  }

  /** A record's place in the ring now (its body offset), or -1 when it must queue behind the backlog or an open reservation. */
  #reserveNow(bodyBytes: number, op: number): number {
    this.#link.publishTail();
    return this.backlog.length === 0 && this.resAt < 0 ? this.out.reserve(bodyBytes, op) : -1;
  }

  #queue(op: number, body: Uint8Array): void {
    this.backlog.push({ op, body });
    this.acks.schedulePump();
  }

  /**
   * Publish what was written since the last commit, ringing the bell when the coordinator
   * asked. The coordinator raises the flag with a new number each time it stops polling
   * this ring (src/coordinator/bells.ts), so one ring per number is enough: until the
   * number changes, the coordinator has not yet taken the bell rung for it.
   */
  commit(): void {
    const asked = this.out.commitSeen();
    if ((asked === 0 || asked === this.#rungFor) && !this.#fresh) return;
    this.#ring(asked);
  }

  /**
   * commit() for a send of `bytes` in a burst: the bell may wait until the sends owing it
   * fill an eighth of the ring, or until the burst ends (the pump calls ringOwed()). A
   * coordinator that stopped polling this ring in the middle of a burst did so to give its
   * core to a receiver it woke: ringing at once made the sender pay a futex wake for every
   * few dozen sends, and the coordinator a wake-up for a handful of records.
   */
  commitSend(bytes: number): void {
    const asked = this.out.commitSeen();
    if ((asked === 0 || asked === this.#rungFor) && !this.#fresh) return;
    if (this.deferBell && !this.#fresh && (this.#bellOwed += bytes) < this.#bellDeferBytes) return;
    this.#ring(asked);
  }

  /** Ring the bell a deferred commit still owes (before this thread waits, and at the end of a burst). */
  ringOwed(): void {
    if (this.#bellOwed === 0) return;
    const asked = Atomics.load(this.out.ctl, RING_CONSUMER_SLEEPING);
    if (asked === 0 || asked === this.#rungFor) this.#bellOwed = 0;
    else this.#ring(asked);
  }

  #ring(asked: number): void {
    if (this.#fresh) {
      // Before the bell: a hostile peer may clear the bit, and the sweep then finds this ring by this word.
      Atomics.store(this.#link.ctl, CTL_PUBLISHED, 1);
      this.#fresh = false;
    }
    this.#rungFor = asked;
    this.#bellOwed = 0;
    this.#link.kick();
  }

  /** Move queued records into the ring while they fit. True when the backlog is empty. */
  flushBacklog(): boolean {
    const q = this.backlog;
    if (q.length === 0) return true;
    if (this.resAt >= 0) return false; // a commit now would publish the open reservation
    let n = 0;
    while (n < q.length) {
      const r = q[n];
      const at = this.out.reserve(r.body.byteLength, r.op);
      if (at < 0) break;
      this.out.u8.set(r.body, at);
      n++;
    }
    if (n > 0) {
      q.splice(0, n);
      this.commit();
    }
    return q.length === 0;
  }

  /** reserve(): open a post() of `bytes` bytes to `to`; returns the view of its payload. */
  reserve(to: HandleId, bytes: number): Uint8Array {
    if (this.resAt >= 0) throw new BusError('EBUSY', 'reserve: a reserved message is still open; postReserved() or cancelReserved() it first');
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw invalid(`reserve: bytes must be a non-negative integer, got ${String(bytes)}`);
    this.resReq = this.writeSend('reserve', to, EMPTY_PAYLOAD, undefined, SEND_FLAG_STREAM, true, bytes);
    return this.out.u8.subarray(this.resAt, this.resAt + bytes);
  }

  /** Close the open reservation: posted as it is, or (cancel) turned into a record the coordinator skips. */
  endReserved(cancel: boolean): void {
    if (cancel) {
      // The record stays in the ring (others may follow it): no id, no flags, no destination,
      // which the coordinator refuses without a verdict and without touching the post stream.
      const w = this.#resRecord;
      const i32 = this.out.i32;
      i32[w] = 0;
      i32[w + 1] = 0;
      i32[w + 2] = 0;
    }
    this.resAt = -1;
    this.commit();
    this.flushBacklog();
  }

  /**
   * Write one OP_SEND record: validated here, encoded into the ring in place (or into a
   * copy queued behind the backlog). `block`: wait for ring space instead of queueing
   * (post()). `reserveBytes` >= 0: leave the payload for the caller (reserve()).
   */
  writeSend(
    what: string, to: HandleId | HandleId[], value: unknown, handles: HandleId[] | undefined, flags: number,
    block = false, reserveBytes = -1,
  ): number {
    this.assertOpen(what);
    let ndest: number;
    if (typeof to === 'number') {
      // A sender names one handle again and again: a valid id is known valid the next time.
      if (to !== this.#checkedTo) {
        checkHandleId(to, what);
        this.#checkedTo = to;
      }
      ndest = 1;
    } else if (Array.isArray(to)) {
      // [] is bus1's empty transaction: validated and sent like any other, it delivers nothing.
      ndest = to.length;
      if (ndest > MAX_DESTINATIONS) throw invalid(`${what}: at most ${MAX_DESTINATIONS} destinations`);
      for (let i = 0; i < ndest; i++) {
        checkHandleId(to[i], what);
        for (let j = 0; j < i; j++) {
          if (to[j] === to[i]) throw new BusError('ENOTUNIQ', `${what}: destination ${to[i]} is named twice`);
        }
      }
    } else {
      throw invalid(`${what}: the destination must be a handle id or an array of them`);
    }
    let nh = 0;
    if (handles !== undefined) {
      if (!Array.isArray(handles)) throw invalid(`${what}: opts.handles must be an array of handle ids`);
      nh = handles.length;
      if (nh > MAX_HANDLES_PER_MESSAGE) throw invalid(`${what}: at most ${MAX_HANDLES_PER_MESSAGE} handles per message`);
      for (let i = 0; i < nh; i++) checkHandleId(handles[i], what);
    }
    // Bytes (the stream's common case) and strings are written as they are; anything else is serialized first.
    let bytes: Uint8Array | null = null, text: string | null = null, plen: number;
    if (value instanceof Uint8Array) {
      bytes = value; // VALUE_BYTES is 0: no tag bits
      plen = value.byteLength;
    } else if (typeof value === 'string') {
      text = value;
      flags |= VALUE_STRING << TAG_SHIFT;
      plen = Buffer.byteLength(value, 'utf8');
    } else {
      const enc = encodeValue(value, what);
      bytes = enc.data as Uint8Array;
      flags |= enc.kind << TAG_SHIFT;
      plen = bytes.byteLength;
    }
    // reserve(): the caller fills the payload in place afterwards.
    if (reserveBytes >= 0) plen = reserveBytes;
    const max = this.#link.maxMessageBytes;
    if (plen > max) {
      throw new BusError('EMSGSIZE', `${what}: message of ${plen} bytes is larger than the bus allows (${max})`);
    }
    const idsBytes = align8(4 * (SEND_HEADER_WORDS + ndest + nh));
    const bodyBytes = idsBytes + plen;
    // Handles named here (destinations too) may have arrived in messages just received.
    this.#link.publishTail();
    const reqId = this.#link.takeReq();
    // A post (a stream) behind a refused one: refused here, as the coordinator would, at no cost to it.
    const post = block && (flags & SEND_FLAG_STREAM) !== 0;
    if (post && reserveBytes < 0 && this.acks.posts.refuse(reqId)) return reqId;
    let i32: Int32Array, u8: Uint8Array, at: number, buf: Buffer;
    let spill: Uint8Array | null = null;
    let direct = this.backlog.length === 0 ? this.out.reserve(bodyBytes, OP_SEND) : -1;
    // A send that finds the ring full must not wait for space behind a bell it owes.
    if (direct < 0) this.ringOwed();
    if (direct < 0 && block) {
      // post(): backpressure by waiting for ring space rather than queueing a copy.
      const deadline = performance.now() + SYNC_TIMEOUT_MS;
      while (!this.flushBacklog()) this.acks.blockForSpace(deadline, what);
      while ((direct = this.out.reserve(bodyBytes, OP_SEND)) < 0) this.acks.blockForSpace(deadline, what);
    }
    if (direct >= 0) {
      i32 = this.out.i32; u8 = this.out.u8; buf = this.#outBuf; at = direct;
    } else {
      spill = new Uint8Array(align8(bodyBytes));
      i32 = new Int32Array(spill.buffer); u8 = spill; buf = Buffer.from(spill.buffer); at = 0;
    }
    let w = at >> 2;
    i32[w] = reqId; i32[w + 1] = flags; i32[w + 2] = ndest; i32[w + 3] = nh; i32[w + 4] = plen; i32[w + 5] = 0;
    w += SEND_HEADER_WORDS;
    if (typeof to === 'number') i32[w++] = to;
    else for (let i = 0; i < ndest; i++) i32[w++] = to[i];
    for (let i = 0; i < nh; i++) i32[w++] = handles![i];
    const p = at + idsBytes;
    if (reserveBytes >= 0) {
      this.resAt = p;
      this.#resRecord = at >> 2;
      return reqId;
    }
    if (text !== null) {
      if (plen > 0) buf.write(text, p, plen, 'utf8');
    } else if (plen <= 8) {
      // Byte stores into shared memory beat set() only up to about 8 bytes (16 bytes: 42 ns against 21 ns here).
      const d = bytes!;
      for (let i = 0; i < plen; i++) u8[p + i] = d[i];
    } else {
      u8.set(bytes!, p);
    }
    if (spill === null) {
      if (block) this.commit();
      else this.commitSend(bodyBytes);
    } else {
      this.backlog.push({ op: OP_SEND, body: spill.subarray(0, bodyBytes) });
    }
    if (post) this.acks.notePost(reqId);
    return reqId;
  }
}
