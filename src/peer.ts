/*
 * A peer's API (bus1 peer.c, user side): send, receive, release, nodes, close.
 *
 * A Peer lives in one thread (usually its own worker) and touches only its own memory:
 *   - it is the single producer of its OUT ring (requests to the coordinator);
 *   - it is the single consumer of its IN descriptor and verdict rings, and reads
 *     payloads in place from its pool.
 *
 * Requests and verdicts: every request that can fail carries a reqId (u32, never 0).
 * The coordinator processes a peer's requests in order, writes a verdict record only for
 * a failure or a request that returns values, and then publishes CTL_ACKED = the last
 * reqId it processed. So the peer learns "everything up to N succeeded, except those
 * with a verdict" from one word; success costs no record, and many sends are settled by
 * one load. Pending requests live in a FIFO in reqId order.
 *
 * Backpressure: when the OUT ring is full, records wait in `backlog` (in order; every
 * later record queues behind them) until the coordinator frees space. Synchronous
 * operations (createNode, releaseHandle) drain the backlog first, blocking with a timeout.
 *
 * Waiting: spin briefly, then sleep with a sleeping flag so the coordinator notifies only
 * when this thread really sleeps (shared/wait.ts). Every wait has a timeout; the loops
 * re-check the peer state, so bus shutdown, disconnect or coordinator death surface as
 * ESHUTDOWN rather than a hang.
 */

import type { MessagePort } from 'node:worker_threads';
import {
  OP_SEND, OP_CREATE_NODE, OP_RELEASE_HANDLE, OP_RELEASE_SLICES, OP_DESTROY_NODES, OP_QUERY, OP_CLOSE, RELEASE_BATCH,
  SEND_HEADER_WORDS, SEND_FLAG_PARTIAL, SEND_FLAG_STREAM, OP_RESUME, MAX_DESTINATIONS, MAX_HANDLES_PER_MESSAGE,
  CTL_STATE, CTL_OPENED, CTL_ACKED, CTL_ACK_WAITING, CTL_REASON, STATE_OPEN, STATE_CLOSED, REASON_PROTOCOL,
  VERDICT_SLOTS, VERDICT_SLOT_BYTES, DESC_SLOT_BYTES, V_REQ, V_CODE, V_RESOURCE, V_DETAIL, V_VALUES_F64,
  D_KIND, D_DEST, D_OFFSET, D_BYTES, D_SEQ_F64, D_UID_F64, KIND_DATA, KIND_NODE_DESTROY, KIND_NODE_RELEASE,
  KIND_CLAIMED, KIND_MASK, DESC_CONTINUE, DESC_NHANDLES_SHIFT, RING_HEAD, RING_TAIL, RING_CONSUMER_SLEEPING,
  RING_PRODUCER_SLEEPING, align8, CTL_BELL, BELL_COUNTER, BELL_MAP, TAG_SHIFT, DESC_NHANDLES_MASK, OP_WAIT,
} from '../shared/layout.js';
import { ByteRingWriter, SlotRingReader, RING_EMPTY } from '../shared/ring.js';
import { SPIN_LOADS, spinWhileEqual, sleepWhileEqual, sleepWhileEqualAsync } from '../shared/wait.js';
import { BusError, errorFromWire } from './errors.js';
import { Message, type HandleId, type SliceOwner } from './message.js';
import { type PeerTicket, checkTicket } from './ticket.js';
import type { Limits } from './coordinator/ledger.js';
import { encodeValue } from './values.js';
import { Layer, type PeerCore } from './router.js';
import { takeSpawnedTicket } from './spawn.js';
import { sendWaiting, type WaitOptions } from './waiting.js';
import { request, type RequestOptions } from './request.js';
import { subscribe, Topic, type Subscription } from './topic.js';

const EMPTY_PAYLOAD = new Uint8Array(0);
/** The body of OP_RESUME: no id, nothing else; shared, never written. */
const RESUME_BODY = new Uint8Array(8);
/** Receipts published together (see #consumed). */
const TAIL_BATCH = 32;
/** How long a synchronous request (createNode, releaseHandle) waits for the coordinator. */
export const SYNC_TIMEOUT_MS = 30_000;
/** Sleep chunk of blocking waits; state is re-checked after each. */
const WAIT_CHUNK_MS = 100;

const K_SEND = 1, K_QUERY = 3, K_VOID = 4, K_SYNC = 5, K_PARTIAL = 6, K_BARRIER = 7;

export interface SendOptions extends WaitOptions {
  /** Handles to pass along; the receiver gets its own ids for them. */
  handles?: HandleId[];
}

export interface MulticastOptions extends SendOptions {
  /** Deliver to the destinations that accept and report the others, instead of all-or-nothing. */
  partial?: true;
}

/** Result of a partial multicast: who got it and who refused, with why. */
export interface SendReport {
  delivered: HandleId[];
  refused: Array<{ destination: HandleId; error: BusError }>;
}

/** Result of flush(): every post() rejected since the previous flush(), with its id. */
export interface PostReport {
  rejected: Array<{ id: number; error: BusError }>;
}

export interface QueryResult {
  limits: Limits;
  remaining: Limits;
}

type Resolve = (v: unknown) => void;
type Reject = (e: unknown) => void;

/** One request waiting for the coordinator's verdict. */
class PendingRequest {
  error: BusError | null = null;
  value: unknown = undefined;
  refused: SendReport['refused'] | null = null;
  constructor(
    readonly req: number, readonly kind: number, readonly resolve: Resolve | null, readonly reject: Reject | null,
    readonly extra: unknown,
  ) {}
}

/** True when request id `a` comes after `b` (u32 ids that wrap). */
function after(a: number, b: number): boolean {
  const d = (a - b) >>> 0;
  return d !== 0 && d < 0x80000000;
}

function shutdown(what: string): BusError {
  return new BusError('ESHUTDOWN', `${what}: the peer is closed or the bus is shut down`);
}

function invalid(msg: string): BusError {
  return new BusError('EINVAL', msg);
}

/** Options are an object (or absent); `partial`, when given, a boolean. */
function checkOptions(opts: unknown, what: string): void {
  if (opts === undefined || opts === null) return;
  if (typeof opts !== 'object') throw invalid(`${what}: options must be an object, got ${typeof opts}`);
  const partial = (opts as MulticastOptions).partial;
  if (partial !== undefined && typeof partial !== 'boolean') throw invalid(`${what}: opts.partial must be true or false`);
}

function checkHandleId(h: unknown, what: string): number {
  if (typeof h !== 'number' || !Number.isInteger(h) || h <= 0 || h > 0xffffffff) {
    throw invalid(`${what}: ${String(h)} is not a handle id (a positive integer)`);
  }
  return h;
}

export class Peer implements AsyncIterable<Message>, SliceOwner {
  readonly uid: number;
  /** Named nodes and handles this peer was given by bus.spawn() (empty for Peer.open(ticket)). */
  readonly handles: Readonly<Record<string, HandleId>>;
  /** The everyday layer: request/reply, subscriptions, routing (src/router.ts). */
  #layer: Layer;
  #out: ByteRingWriter;
  #outBuf: Buffer;
  #verdicts: SlotRingReader;
  #desc: SlotRingReader;
  #ctl: Int32Array;
  #inSab: SharedArrayBuffer;
  #inI32: Int32Array;
  #doorbell: Int32Array;
  /** Word and bit of this peer's bell in the doorbell's bell map (word < 0: none). */
  #bellWord: number;
  #bellBit: number;
  #port: MessagePort | null;
  #maxMessageBytes: number;
  #closed = false;
  #coordinatorGone = false;
  #nextReq = 1;
  // Requests waiting for their verdict, in reqId order (#head is the front). post()s
  // have no entry: a verdict that matches no entry is a rejected post.
  #pending: PendingRequest[] = [];
  #head = 0;
  /** reqId of the newest post(), and whether any post may still be unacknowledged. */
  #lastPost = 0;
  #postsInFlight = false;
  #backlog: Array<{ op: number; body: Uint8Array }> = [];
  #pumpScheduled = false;
  #pumpSleeping = false;
  #asyncRecvWaiters = 0;
  #rejectedPosts: Array<{ id: number; error: BusError }> = [];
  // The last synchronous request's outcome.
  #syncDone = false;
  #syncError: BusError | null = null;
  #syncValue = 0;
  #pumpFn = () => this.#pump();

  private constructor(ticket: PeerTicket, handles: Readonly<Record<string, HandleId>>) {
    this.uid = ticket.uid;
    this.handles = handles;
    const m = ticket;
    this.#out = new ByteRingWriter(m.outSab, 0, m.outRingBytes);
    this.#outBuf = Buffer.from(m.outSab, this.#out.u8.byteOffset, m.outRingBytes);
    this.#verdicts = new SlotRingReader(m.inSab, m.verdictOffset, VERDICT_SLOTS, VERDICT_SLOT_BYTES);
    this.#desc = new SlotRingReader(m.inSab, m.descriptorOffset, m.descriptorSlots, DESC_SLOT_BYTES);
    this.#ctl = new Int32Array(m.inSab, 0, 64);
    this.#inSab = m.inSab;
    this.#inI32 = new Int32Array(m.inSab, 0, m.inSab.byteLength >> 2);
    this.#doorbell = new Int32Array(m.doorbell);
    const bell = Atomics.load(this.#ctl, CTL_BELL);
    this.#bellWord = bell >= 0 ? BELL_MAP + (bell >> 5) : -1;
    this.#bellBit = bell >= 0 ? 1 << (bell & 31) : 0;
    this.#maxMessageBytes = m.maxMessageBytes;
    this.#port = m.port ?? null;
    if (this.#port !== null) {
      // Closing of the other end means the coordinator thread is gone.
      this.#port.on('close', () => {
        this.#coordinatorGone = true;
        Atomics.notify(this.#ctl, CTL_ACKED);
        Atomics.notify(this.#desc.ctl, RING_HEAD);
      });
      this.#port.unref();
    }
    this.#layer = new Layer(this, this.#core);
  }

  /**
   * Open the peer a ticket names. A ticket can be opened once. With no argument: the peer
   * that bus.spawn() prepared for this worker, with its named nodes and handles.
   */
  static open(ticket?: PeerTicket): Peer {
    let handles: Readonly<Record<string, HandleId>> = NO_NAMES;
    if (ticket === undefined) ({ ticket, handles } = takeSpawnedTicket());
    checkTicket(ticket, 'Peer.open');
    const ctl = new Int32Array(ticket.inSab, 0, 64);
    if (Atomics.compareExchange(ctl, CTL_OPENED, 0, 1) !== 0) {
      throw invalid('Peer.open: this ticket was already used; ask the bus owner for a new one');
    }
    Atomics.notify(ctl, CTL_OPENED); // bus.spawn() waits for this
    if (Atomics.load(ctl, CTL_STATE) !== STATE_OPEN) throw shutdown('Peer.open');
    return new Peer(ticket, handles);
  }

  /** True until close(), disconnection by the coordinator, or bus shutdown. */
  get isOpen(): boolean {
    return !this.#closed && !this.#coordinatorGone && Atomics.load(this.#ctl, CTL_STATE) === STATE_OPEN;
  }

  /** Why the coordinator cut this peer off, if it did: 'protocol' (bad requests) or 'thread-exit'. */
  get disconnectReason(): 'protocol' | 'thread-exit' | null {
    const r = Atomics.load(this.#ctl, CTL_REASON);
    return r === 0 ? null : r === REASON_PROTOCOL ? 'protocol' : 'thread-exit';
  }

  // ---- nodes and handles ------------------------------------------------------------------

  /** A new node owned by this peer; returns this peer's handle id for it. */
  createNode(): HandleId {
    this.#syncRequest('createNode', OP_CREATE_NODE, 0);
    return this.#syncValue;
  }

  /** Drop one reference to a handle (bus1 HANDLE_RELEASE). */
  releaseHandle(h: HandleId): void {
    checkHandleId(h, 'releaseHandle');
    this.#syncRequest('releaseHandle', OP_RELEASE_HANDLE, h);
  }

  /** Destroy nodes this peer owns, in one transaction: every holder gets node-destroy. */
  destroyNodes(nodes: HandleId[]): Promise<void> {
    try {
      this.#assertOpen('destroyNodes');
      if (!Array.isArray(nodes)) throw invalid('destroyNodes: expects an array of handle ids');
      if (nodes.length > MAX_DESTINATIONS) throw invalid(`destroyNodes: at most ${MAX_DESTINATIONS} nodes at once`);
      const seen = new Set<number>();
      for (const h of nodes) {
        checkHandleId(h, 'destroyNodes');
        if (seen.has(h)) throw new BusError('ENOTUNIQ', `destroyNodes: handle ${h} is named twice`);
        seen.add(h);
      }
      const reqId = this.#takeReq();
      const body = new Int32Array(2 + nodes.length);
      body[0] = reqId;
      body[1] = nodes.length;
      body.set(nodes, 2);
      this.#writeRecord(OP_DESTROY_NODES, new Uint8Array(body.buffer));
      return this.#expect(reqId, K_VOID, 'destroyNodes') as Promise<void>;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The peer's limits and what remains of them (bus1 PEER_QUERY). */
  query(): Promise<QueryResult> {
    try {
      this.#assertOpen('query');
      const reqId = this.#takeReq();
      this.#writeRecord(OP_QUERY, new Uint8Array(new Int32Array([reqId, 0]).buffer));
      return this.#expect(reqId, K_QUERY, 'query') as Promise<QueryResult>;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ---- send ---------------------------------------------------------------------------

  /**
   * Send `data` (and handles) to one node, or atomically to several (multicast: all or
   * none). Resolves once the coordinator has committed it; rejects with BusError.
   */
  send(to: HandleId | HandleId[], data: unknown, opts?: SendOptions): Promise<void>;
  send(to: HandleId[], data: unknown, opts: MulticastOptions & { partial: true }): Promise<SendReport>;
  send(to: HandleId | HandleId[], data: unknown, opts?: MulticastOptions): Promise<void | SendReport> {
    try {
      checkOptions(opts, 'send');
    } catch (e) {
      return Promise.reject(e);
    }
    const partial = opts?.partial === true;
    if (opts?.wait !== undefined && opts.wait !== false && !partial) return sendWaiting(this.#core, to, data, opts);
    return this.#sendFlags(to, data, opts?.handles, partial ? SEND_FLAG_PARTIAL : 0);
  }

  #sendFlags(to: HandleId | HandleId[], data: unknown, handles: HandleId[] | undefined, flags: number): Promise<void | SendReport> {
    try {
      const partial = (flags & SEND_FLAG_PARTIAL) !== 0;
      const reqId = this.#writeSend('send', to, data, handles, flags);
      return this.#expect(reqId, partial ? K_PARTIAL : K_SEND, partial ? (to as HandleId[]).slice() : null) as Promise<void | SendReport>;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ---- the everyday layer (src/request.ts, src/topic.ts) --------------------------------

  /** Send a request and resolve with its reply (ETIMEDOUT, ESHUTDOWN, AbortError: see RequestOptions). */
  request(to: HandleId, data: unknown, opts?: RequestOptions): Promise<Message> {
    return request(this.#layer, to, data, opts);
  }

  /** Subscribe at the publisher behind `to`; iterate the events, close() to unsubscribe. */
  subscribe(to: HandleId, data?: unknown, opts?: SendOptions): Promise<Subscription> {
    return subscribe(this.#layer, to, data, opts);
  }

  /** A new, empty set of subscriptions to publish to. */
  topic(): Topic {
    return new Topic(this.#layer);
  }

  /** What the layer may do with this peer's internals; nothing else reaches them. */
  #core: PeerCore = {
    send: (to, data, handles, flags) => this.#sendFlags(to, data, handles, flags),
    recvRing: () => this.#recvRing(),
    headWord: () => Atomics.load(this.#desc.ctl, RING_HEAD),
    // Spin first, as recv() does: a reply often lands within microseconds.
    sleepHead: (seen) => spinWhileEqual(this.#desc.ctl, RING_HEAD, seen, SPIN_LOADS) ? Promise.resolve() : this.#sleepHead(seen),
    createNodeLater: () => {
      const reqId = this.#takeReq();
      this.#writeRecord(OP_CREATE_NODE, new Uint8Array(new Int32Array([reqId, 0]).buffer));
      return this.#expect(reqId, K_SEND, 'createNode') as Promise<HandleId>; // the verdict's detail is the id
    },
    wakeHead: () => Atomics.notify(this.#desc.ctl, RING_HEAD),
    wakeWord: () => this.#ctl,
    isOpen: () => this.isOpen,
    writeWait: (uid, flags) => this.#writeRecord(OP_WAIT, new Uint8Array(new Int32Array([0, uid, flags]).buffer)),
    // reqId 0: no verdict and no wait; the record is ordered after everything written before it.
    releaseLater: (h) => this.#writeRecord(OP_RELEASE_HANDLE, new Uint8Array(new Int32Array([0, h]).buffer)),
  };

  /**
   * The high-throughput form of send: no promise per message. Returns the request id;
   * bad arguments throw at once, and every message the coordinator rejects is reported
   * by the next flush() with its id and BusError.
   */
  post(to: HandleId | HandleId[], data: unknown, opts?: SendOptions): number {
    checkOptions(opts, 'post');
    const reqId = this.#writeSend('post', to, data, opts?.handles, SEND_FLAG_STREAM, true);
    this.#lastPost = reqId;
    this.#postsInFlight = true;
    return reqId;
  }

  /**
   * Wait until every post() so far has a verdict; returns (and forgets) the rejected ones.
   * Posts are a stream: once one is refused, every later one is refused with the same
   * error until flush() is called, so the rejected posts of a flush are always the last
   * ones, in order, and can be posted again as they are. Posts after flush() are
   * attempted afresh.
   */
  flush(): Promise<PostReport> {
    this.#settle();
    // Refusals from before a shutdown are still reported; after that, like every call, ESHUTDOWN.
    if (!this.#postsInFlight && this.#rejectedPosts.length === 0 && this.isOpen) return Promise.resolve(this.#takeRejected());
    if (!this.isOpen) return this.#rejectedPosts.length > 0 ? Promise.resolve(this.#takeRejected()) : Promise.reject(shutdown('flush'));
    this.#writeRecord(OP_RESUME, RESUME_BODY);
    if (!this.#postsInFlight) return Promise.resolve(this.#takeRejected());
    return this.#expect(this.#lastPost, K_BARRIER, 'flush') as Promise<PostReport>;
  }

  /**
   * One copy for large payloads: reserve a post() of `bytes` bytes to `to` in the OUT
   * ring and return a view of its payload to fill in place; postReserved() then posts it
   * (the coordinator's copy into the receiver's pool is the only copy). The view must
   * not be used after postReserved() or cancelReserved(). While a reservation is open the
   * ring cannot publish, so every other request fails with EBUSY (releases wait).
   */
  reserve(to: HandleId, bytes: number): Uint8Array {
    if (this.#resAt >= 0) throw new BusError('EBUSY', 'reserve: a reserved message is still open; postReserved() or cancelReserved() it first');
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw invalid(`reserve: bytes must be a non-negative integer, got ${String(bytes)}`);
    const reqId = this.#writeSend('reserve', to, EMPTY_PAYLOAD, undefined, SEND_FLAG_STREAM, true, bytes);
    this.#resReq = reqId;
    return this.#out.u8.subarray(this.#resAt, this.#resAt + bytes);
  }

  /** Post the message reserve() opened; returns its id, as post() does. */
  postReserved(): number {
    if (this.#resAt < 0) throw invalid('postReserved: no message is reserved');
    this.#resAt = -1;
    this.#lastPost = this.#resReq;
    this.#postsInFlight = true;
    if (this.#out.commit()) this.#kick();
    this.#flushBacklog();
    return this.#resReq;
  }

  /** Give up the message reserve() opened: it becomes a record the coordinator skips. */
  cancelReserved(): void {
    if (this.#resAt < 0) return;
    // The record stays in the ring (others may follow it): no id, no flags, no destination,
    // which the coordinator refuses without a verdict and without touching the post stream.
    const w = this.#resRecord;
    const i32 = this.#out.i32;
    i32[w] = 0;
    i32[w + 1] = 0;
    i32[w + 2] = 0;
    this.#resAt = -1;
    if (this.#out.commit()) this.#kick();
    this.#flushBacklog();
  }
  /** Payload offset in the OUT ring of the open reservation (-1: none), its record's word and its reqId. */
  #resAt = -1;
  #resRecord = 0;
  #resReq = 0;

  #takeRejected(): PostReport {
    const rejected = this.#rejectedPosts;
    this.#rejectedPosts = [];
    return { rejected };
  }

  #writeSend(
    what: string, to: HandleId | HandleId[], value: unknown, handles: HandleId[] | undefined, flags: number,
    block = false, reserveBytes = -1,
  ): number {
    this.#assertOpen(what);
    let ndest: number;
    if (typeof to === 'number') {
      checkHandleId(to, what);
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
    const enc = encodeValue(value, what);
    const data = enc.data;
    flags |= enc.kind << TAG_SHIFT;
    const isString = typeof data === 'string';
    // reserve(): the caller fills the payload in place afterwards.
    const plen = reserveBytes >= 0 ? reserveBytes : isString ? Buffer.byteLength(data, 'utf8') : data.byteLength;
    if (plen > this.#maxMessageBytes) {
      throw new BusError('EMSGSIZE', `${what}: message of ${plen} bytes is larger than the bus allows (${this.#maxMessageBytes})`);
    }
    const idsBytes = align8(4 * (SEND_HEADER_WORDS + ndest + nh));
    const bodyBytes = idsBytes + plen;
    // Handles named here (destinations too) may have arrived in messages just received.
    this.#publishTail();
    const reqId = this.#takeReq();
    let i32: Int32Array, u8: Uint8Array, at: number, buf: Buffer;
    let spill: Uint8Array | null = null;
    let direct = this.#backlog.length === 0 ? this.#out.reserve(bodyBytes, OP_SEND) : -1;
    if (direct < 0 && block) {
      // post(): backpressure by waiting for ring space rather than queueing a copy.
      const deadline = performance.now() + SYNC_TIMEOUT_MS;
      while (!this.#flushBacklog()) this.#blockForSpace(deadline, what);
      while ((direct = this.#out.reserve(bodyBytes, OP_SEND)) < 0) this.#blockForSpace(deadline, what);
    }
    if (direct >= 0) {
      i32 = this.#out.i32; u8 = this.#out.u8; buf = this.#outBuf; at = direct;
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
      this.#resAt = p;
      this.#resRecord = at >> 2;
      return reqId;
    }
    if (isString) {
      if (plen > 0) buf.write(data as string, p, plen, 'utf8');
    } else if (plen <= 32) {
      const d = data as Uint8Array;
      for (let i = 0; i < plen; i++) u8[p + i] = d[i];
    } else {
      u8.set(data as Uint8Array, p);
    }
    if (spill === null) {
      if (this.#out.commit()) this.#kick();
    } else {
      this.#backlog.push({ op: OP_SEND, body: spill.subarray(0, bodyBytes) });
    }
    return reqId;
  }

  // ---- receive --------------------------------------------------------------------------

  /** The next message or notification, or undefined when none is queued. */
  tryRecv(): Message | undefined {
    if (this.#closed || Atomics.load(this.#ctl, CTL_STATE) !== STATE_OPEN || this.#coordinatorGone) {
      throw shutdown('recv');
    }
    return this.#layer.unstash() ?? this.#recvRing();
  }

  /** The next message from the ring that the layer does not take for itself (replies, events...). */
  #recvRing(): Message | undefined {
    const desc = this.#desc;
    const i32 = desc.i32;
    for (;;) {
      const at = desc.read();
      if (at === RING_EMPTY) {
        // About to wait, or to return to a caller that may: let the coordinator see our receipts and releases.
        this.#flushReleases();
        return undefined;
      }
      let word = i32[at + D_KIND];
      let kind = word & KIND_MASK;
      if (kind === KIND_NODE_RELEASE) {
        // The coordinator may withdraw it concurrently; claim it first.
        if (Atomics.compareExchange(i32, at + D_KIND, KIND_NODE_RELEASE, KIND_CLAIMED) !== KIND_NODE_RELEASE) kind = 0;
      }
      if (kind !== KIND_DATA && kind !== KIND_NODE_DESTROY && kind !== KIND_NODE_RELEASE) {
        desc.consume();
        this.#consumed();
        continue;
      }
      const dest = i32[at + D_DEST] >>> 0;
      const seq = desc.f64[(at >> 1) + D_SEQ_F64];
      const uid = desc.f64[(at >> 1) + D_UID_F64];
      let msg: Message;
      if (kind === KIND_DATA) {
        const offset = i32[at + D_OFFSET] >>> 0;
        const bytes = i32[at + D_BYTES] >>> 0;
        const nh = (word >>> DESC_NHANDLES_SHIFT) & DESC_NHANDLES_MASK;
        let handles: HandleId[] | null = null;
        if (nh > 0) {
          handles = new Array(nh);
          const hw = (offset + ((bytes + 3) & ~3)) >> 2;
          for (let i = 0; i < nh; i++) handles[i] = this.#inI32[hw + i] >>> 0;
        }
        msg = new Message('data', dest, new Uint8Array(this.#inSab, offset, bytes), handles, uid, seq,
          (word & DESC_CONTINUE) !== 0, this, offset, word >>> TAG_SHIFT, this.#layer);
      } else {
        msg = new Message(kind === KIND_NODE_DESTROY ? 'node-destroy' : 'node-release', dest, null, null, uid, seq,
          (word & DESC_CONTINUE) !== 0, null, 0);
      }
      desc.consume();
      this.#consumed();
      if (this.#layer.route(msg)) continue;
      return msg;
    }
  }

  /** The next message; waits for one. Rejects with ESHUTDOWN once the peer is closed. */
  async recv(opts?: { signal?: AbortSignal }): Promise<Message> {
    checkOptions(opts, 'recv');
    const signal = opts?.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('recv: opts.signal must be an AbortSignal');
    const head = this.#desc.ctl;
    for (;;) {
      // Read before looking, so that a publish in between wakes the wait below.
      const seen = Atomics.load(head, RING_HEAD);
      const m = this.tryRecv();
      if (m !== undefined) return m;
      if (signal?.aborted) throw signal.reason;
      if (spinWhileEqual(head, RING_HEAD, seen, SPIN_LOADS)) continue;
      await this.#sleepHead(seen, signal);
    }
  }

  /** One bounded event-loop sleep until the descriptor head moves from `seen`. */
  async #sleepHead(seen: number, signal?: AbortSignal): Promise<void> {
    const head = this.#desc.ctl;
    this.#asyncRecvWaiters++;
    Atomics.store(head, RING_CONSUMER_SLEEPING, 1);
    try {
      const r = sleepWhileEqualAsync(head, RING_HEAD, seen, -1, 1000);
      if (typeof r !== 'string') {
        if (signal === undefined) await r;
        else await abortable(r, signal, () => Atomics.notify(head, RING_HEAD));
      }
    } finally {
      if (--this.#asyncRecvWaiters === 0) Atomics.store(head, RING_CONSUMER_SLEEPING, 0);
    }
  }

  /**
   * Blocking receive for threads that may block (workers): spin, then Atomics.wait.
   * Returns undefined after `timeoutMs` without a message. Faster than recv() because a
   * blocked thread is woken directly rather than through its event loop.
   */
  recvSync(timeoutMs = Infinity): Message | undefined {
    // NaN would make every wait below infinite.
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0)) {
      throw invalid(`recvSync: timeoutMs must be a number >= 0 (or Infinity), got ${String(timeoutMs)}`);
    }
    const deadline = performance.now() + timeoutMs;
    const desc = this.#desc;
    for (;;) {
      const seen = Atomics.load(desc.ctl, RING_HEAD);
      const m = this.tryRecv();
      if (m !== undefined) return m;
      const left = deadline - performance.now();
      if (left <= 0) return undefined;
      desc.waitForData(seen, Math.min(left, WAIT_CHUNK_MS));
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    for (;;) {
      let m: Message;
      try {
        m = await this.recv();
      } catch (e) {
        if (e instanceof BusError && e.code === 'ESHUTDOWN') return;
        throw e;
      }
      yield m;
    }
  }

  /**
   * @internal SLICE_RELEASE, called by Message.release(). Releases are gathered into one
   * record of up to RELEASE_BATCH offsets, written when the batch is full, when this
   * thread is about to wait, before any other request, or at the end of the current
   * task (microtask), so that the coordinator sees them promptly without a record each.
   */
  releaseSlice(offset: number): void {
    if (!this.isOpen) return; // the coordinator already took the whole pool back
    const n = this.#releases[1];
    this.#releases[2 + n] = offset;
    this.#releases[1] = n + 1;
    if (n + 1 === RELEASE_BATCH) this.#flushReleases();
    else if (n === 0) queueMicrotask(this.#flushReleasesFn);
  }
  // The release batch and the small request body share one buffer (one allocation per peer).
  #scratch = new Int32Array(2 + RELEASE_BATCH + 2);
  #releases = this.#scratch.subarray(0, 2 + RELEASE_BATCH);
  #releasesU8 = new Uint8Array(this.#scratch.buffer, 0, 4 * (2 + RELEASE_BATCH));
  #flushReleasesFn = () => this.#flushReleases();
  #small = this.#scratch.subarray(2 + RELEASE_BATCH);
  #smallU8 = new Uint8Array(this.#scratch.buffer, 4 * (2 + RELEASE_BATCH), 8);

  /**
   * Receipts (the descriptor tail) are published in batches too: the tail's cache line is
   * read by the coordinator, and writing it per message would bounce it between cores.
   * It is published before anything the coordinator must see in order after it (a
   * release, a request naming a handle that arrived in a message), when the batch is
   * full, when this thread is about to wait, and at the end of the current task.
   */
  #consumed(): void {
    if (++this.#unpublished >= TAIL_BATCH) this.#publishTail();
    else if (this.#unpublished === 1) queueMicrotask(this.#publishTailFn);
  }
  #unpublished = 0;
  #publishTailFn = () => this.#publishTail();

  #publishTail(): void {
    if (this.#unpublished === 0) return;
    this.#unpublished = 0;
    this.#desc.release();
  }

  #flushReleases(): void {
    this.#publishTail();
    const n = this.#releases[1];
    if (n === 0) return;
    if (this.isOpen) this.#writeRecordRaw(OP_RELEASE_SLICES, this.#releasesU8.subarray(0, 8 + 4 * n));
    this.#releases[1] = 0;
  }

  // ---- close --------------------------------------------------------------------------

  /** Disconnect: nodes destroyed (holders told), handles released, queue dropped. Later calls: ESHUTDOWN. */
  async close(): Promise<void> {
    if (this.isOpen) this.cancelReserved();
    this.#assertOpen('close');
    const reqId = this.#takeReq();
    this.#writeRecord(OP_CLOSE, new Uint8Array(new Int32Array([reqId, 0]).buffer));
    try {
      await this.#expect(reqId, K_VOID, 'close');
    } catch (e) {
      // Shut down underneath us: closed all the same.
      if (!(e instanceof BusError && e.code === 'ESHUTDOWN')) throw e;
    } finally {
      this.#closed = true;
      this.#port?.close();
      this.#port = null;
    }
  }

  // ---- internals ------------------------------------------------------------------------

  #assertOpen(what: string): void {
    if (!this.isOpen) throw shutdown(what);
    if (this.#resAt >= 0) throw new BusError('EBUSY', `${what}: a reserved message is still open; postReserved() or cancelReserved() it first`);
  }

  #takeReq(): number {
    const id = this.#nextReq;
    this.#nextReq = (id + 1) >>> 0 || 1;
    return id;
  }

  /**
   * Called after publishing when the coordinator said it does not poll this OUT ring:
   * ring this peer's bell and the doorbell (shared/layout.ts, Doorbell). Always both: a
   * "coordinator sleeps" word that peers trusted could be cleared by any one of them.
   */
  #kick(): void {
    const db = this.#doorbell;
    if (this.#bellWord >= 0) Atomics.or(db, this.#bellWord, this.#bellBit);
    Atomics.add(db, BELL_COUNTER, 1);
    Atomics.notify(db, BELL_COUNTER, 1);
  }

  /** Write (or queue behind the backlog) one small record; the body starts with its reqId. */
  #writeRecord(op: number, body: Uint8Array): void {
    this.#flushReleases();
    this.#writeRecordRaw(op, body);
  }

  #writeRecordRaw(op: number, body: Uint8Array): void {
    this.#publishTail();
    if (this.#backlog.length === 0 && this.#resAt < 0) {
      const at = this.#out.reserve(body.byteLength, op);
      if (at >= 0) {
        this.#out.u8.set(body, at);
        if (this.#out.commit()) this.#kick();
        return;
      }
    }
    this.#backlog.push({ op, body: body.slice() });
    this.#schedulePump();
  }

  /** Move queued records into the ring while they fit. True when the backlog is empty. */
  #flushBacklog(): boolean {
    const q = this.#backlog;
    if (q.length === 0) return true;
    if (this.#resAt >= 0) return false; // a commit now would publish the open reservation
    let n = 0;
    while (n < q.length) {
      const r = q[n];
      const at = this.#out.reserve(r.body.byteLength, r.op);
      if (at < 0) break;
      this.#out.u8.set(r.body, at);
      n++;
    }
    if (n > 0) {
      q.splice(0, n);
      if (this.#out.commit()) this.#kick();
    }
    return q.length === 0;
  }

  #pend(reqId: number, kind: number, resolve: Resolve | null, reject: Reject | null, extra: unknown): PendingRequest {
    const p = new PendingRequest(reqId, kind, resolve, reject, extra);
    this.#pending.push(p);
    this.#schedulePump();
    return p;
  }

  #hasPending(): boolean {
    return this.#head < this.#pending.length;
  }

  #expect(reqId: number, kind: number, extra: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => this.#pend(reqId, kind, resolve, reject, extra));
  }

  #schedulePump(): void {
    if (this.#pumpScheduled || this.#pumpSleeping) return;
    this.#pumpScheduled = true;
    queueMicrotask(this.#pumpFn);
  }

  /** Settle what the coordinator has acknowledged; keep waiting (async) while anything is pending. */
  #pump(): void {
    this.#pumpScheduled = false;
    for (;;) {
      // Read before looking, so that progress in between wakes the wait below.
      const seenAck = Atomics.load(this.#ctl, CTL_ACKED);
      const seenTail = Atomics.load(this.#out.ctl, RING_TAIL);
      this.#settle();
      const idle = this.#flushBacklog() && !this.#hasPending();
      if (idle) return;
      if (!this.isOpen) {
        this.#failAll();
        return;
      }
      const waitSpace = this.#backlog.length > 0;
      const ctl = waitSpace ? this.#out.ctl : this.#ctl;
      const index = waitSpace ? RING_TAIL : CTL_ACKED;
      const seen = waitSpace ? seenTail : seenAck;
      if (spinWhileEqual(ctl, index, seen, SPIN_LOADS)) continue;
      const r = sleepWhileEqualAsync(ctl, index, seen, waitSpace ? RING_PRODUCER_SLEEPING : CTL_ACK_WAITING, 1000);
      if (typeof r === 'string') continue;
      this.#pumpSleeping = true;
      void r.then(() => {
        this.#pumpSleeping = false;
        this.#pump();
      });
      return;
    }
  }

  /**
   * Settle everything the coordinator has acknowledged (up to CTL_ACKED): verdict records
   * are matched, in order, to pending entries; one that matches no entry is a rejected
   * post(). Entries without a verdict succeeded.
   */
  #settle(): void {
    const acked = Atomics.load(this.#ctl, CTL_ACKED) >>> 0;
    const v = this.#verdicts;
    const q = this.#pending;
    let consumed = false;
    for (;;) {
      const at = v.read();
      if (at === RING_EMPTY) break;
      const vreq = v.i32[at + V_REQ] >>> 0;
      if (after(vreq, acked)) break;
      // Entries before this verdict had none: they succeeded.
      while (this.#head < q.length && after(vreq, q[this.#head].req)) this.#finish(q[this.#head++]);
      const head = this.#head < q.length ? q[this.#head] : null;
      const owner = head !== null && head.req === vreq && head.kind !== K_BARRIER ? head : null;
      const code = v.i32[at + V_CODE];
      const f = (at >> 1) + V_VALUES_F64;
      const name = owner === null ? 'post' : typeof owner.extra === 'string' ? owner.extra : opName(owner.kind);
      if (code !== 0) {
        const detail = v.i32[at + V_DETAIL] >>> 0;
        // A stack captured here would only show this loop, and costs microseconds per
        // error: a sender far ahead of its receiver can be refused thousands of times.
        const stackLimit = Error.stackTraceLimit;
        Error.stackTraceLimit = 0;
        const err = errorFromWire(name, code, v.i32[at + V_RESOURCE], detail, v.f64[f]);
        Error.stackTraceLimit = stackLimit;
        if (owner === null) this.#rejectedPosts.push({ id: vreq, error: err });
        // A partial send's refusal of one destination is EDQUOT or ESHUTDOWN; any other code refused the whole request.
        else if (owner.kind === K_PARTIAL && (err.code === 'EDQUOT' || err.code === 'ESHUTDOWN')) (owner.refused ??= []).push({ destination: detail, error: err });
        else owner.error = err;
      } else if (owner !== null && owner.kind === K_QUERY) {
        owner.value = {
          limits: { messages: v.f64[f], handles: v.f64[f + 1], bytes: v.f64[f + 2] },
          remaining: { messages: v.f64[f + 3], handles: v.f64[f + 4], bytes: v.f64[f + 5] },
        };
      } else if (owner !== null) {
        owner.value = v.i32[at + V_DETAIL] >>> 0;
      }
      v.consume();
      consumed = true;
    }
    if (consumed) v.release();
    while (this.#head < q.length && !after(q[this.#head].req, acked)) this.#finish(q[this.#head++]);
    if (this.#postsInFlight && !after(this.#lastPost, acked)) this.#postsInFlight = false;
    if (this.#head === q.length) {
      q.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > q.length) {
      q.splice(0, this.#head);
      this.#head = 0;
    }
  }

  #finish(p: PendingRequest): void {
    switch (p.kind) {
      case K_SYNC:
        this.#syncDone = true;
        this.#syncError = p.error;
        this.#syncValue = typeof p.value === 'number' ? p.value : 0;
        break;
      case K_BARRIER:
        p.resolve!(this.#takeRejected());
        break;
      case K_PARTIAL: {
        if (p.error !== null) {
          p.reject!(p.error);
          break;
        }
        const refused = p.refused ?? [];
        const no = new Set(refused.map((r) => r.destination));
        p.resolve!({ delivered: (p.extra as HandleId[]).filter((d) => !no.has(d)), refused });
        break;
      }
      default:
        if (p.error !== null) p.reject!(p.error);
        else p.resolve!(p.value);
    }
  }

  /** The peer is shut down: everything still pending fails with ESHUTDOWN. */
  #failAll(): void {
    this.#settle();
    const closedByUs = Atomics.load(this.#ctl, CTL_STATE) === STATE_CLOSED;
    const q = this.#pending;
    while (this.#head < q.length) {
      const p = q[this.#head++];
      const err = shutdown(typeof p.extra === 'string' ? p.extra : opName(p.kind));
      if (p.kind === K_SYNC) {
        this.#syncDone = true;
        this.#syncError = err;
      } else if (p.kind === K_VOID && closedByUs) {
        p.resolve!(undefined);
      } else {
        p.reject!(err);
      }
    }
    q.length = 0;
    this.#head = 0;
    this.#backlog.length = 0;
  }

  /** A request that must be answered before returning (createNode, releaseHandle). */
  #syncRequest(what: string, op: number, arg: number): void {
    this.#assertOpen(what);
    this.#publishTail();
    const deadline = performance.now() + SYNC_TIMEOUT_MS;
    // Everything queued earlier goes first, to keep this peer's requests in order.
    while (!this.#flushBacklog()) this.#blockForSpace(deadline, what);
    const reqId = this.#takeReq();
    const body = this.#small;
    body[0] = reqId;
    body[1] = arg;
    let at: number;
    while ((at = this.#out.reserve(8, op)) < 0) this.#blockForSpace(deadline, what);
    this.#out.u8.set(this.#smallU8, at);
    if (this.#out.commit()) this.#kick();
    this.#syncDone = false;
    this.#syncError = null;
    this.#pend(reqId, K_SYNC, null, null, what);
    for (;;) {
      const seen = Atomics.load(this.#ctl, CTL_ACKED);
      this.#settle();
      if (this.#syncDone) break;
      this.#blockOn(this.#ctl, CTL_ACKED, CTL_ACK_WAITING, seen, deadline, what);
    }
    if (this.#syncError !== null) throw this.#syncError;
  }

  /** Wait (blocking) for the coordinator to free OUT ring space, draining verdicts meanwhile so it is never stuck on us. */
  #blockForSpace(deadline: number, what: string): void {
    // The tail that made the last reserve() fail: any release since then ends the wait.
    const seen = this.#out.tailSeen | 0;
    this.#settle();
    this.#blockOn(this.#out.ctl, RING_TAIL, RING_PRODUCER_SLEEPING, seen, deadline, what);
  }

  /** One bounded blocking wait on a word; throws ESHUTDOWN when the peer is shut down or the coordinator is stuck. */
  #blockOn(ctl: Int32Array, index: number, flag: number, seen: number, deadline: number, what: string): void {
    if (!this.isOpen) {
      this.#failAll();
      throw shutdown(what);
    }
    const left = deadline - performance.now();
    if (left <= 0) {
      throw new BusError('ESHUTDOWN', `${what}: the coordinator did not answer within ${SYNC_TIMEOUT_MS} ms`);
    }
    if (spinWhileEqual(ctl, index, seen, SPIN_LOADS)) return;
    sleepWhileEqual(ctl, index, seen, flag, Math.min(left, WAIT_CHUNK_MS));
  }
}

const NO_NAMES: Readonly<Record<string, HandleId>> = Object.freeze({});

function opName(kind: number): string {
  switch (kind) {
    case K_SEND: case K_PARTIAL: return 'send';
    case K_QUERY: return 'query';
    case K_SYNC: return 'request';
    default: return 'request';
  }
}

/** Await `p`, or reject with the signal's reason when it aborts first (waking the wait). */
function abortable<T>(p: Promise<T>, signal: AbortSignal, wake: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      wake();
      reject(signal.reason);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => {
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    }, reject);
  });
}
