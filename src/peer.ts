/*
 * A peer's API (bus1 peer.c, user side): send, receive, release, nodes, close.
 *
 * A Peer lives in one thread (usually its own worker) and touches only its own memory:
 *   - it is the single producer of its OUT ring (requests to the coordinator);
 *   - it is the single consumer of its IN descriptor and verdict rings, and reads
 *     payloads in place from its pool.
 *
 * This class is the public face and the control requests (nodes, handles, query,
 * close); the work is done by four module-private parts in src/peer/, which share one
 * PeerLink and which the user cannot reach (# fields):
 *   link.ts    the shared words and flags, request ids, the bell, receipts (tail) batching;
 *   outbox.ts  the send path: OUT ring writer, backlog, post/reserve encoding;
 *   acks.ts    the request pump: pending requests, verdicts, CTL_ACKED, blocking waits;
 *   inbox.ts   the receive path: descriptor ring, Message creation, release batching.
 *
 * Every wait has a timeout; the loops re-check the peer state, so bus shutdown,
 * disconnect or coordinator death surface as ESHUTDOWN rather than a hang.
 */

import {
  OP_CREATE_NODE, OP_RELEASE_HANDLE, OP_DESTROY_NODES, OP_QUERY, OP_CLOSE, OP_RESUME, OP_WAIT, SEND_FLAG_PARTIAL,
  SEND_FLAG_STREAM, MAX_DESTINATIONS, CTL_OPENED, CTL_STATE, CTL_REASON, STATE_OPEN, REASON_PROTOCOL, RING_HEAD,
} from '../shared/layout.js';
import { BusError } from './errors.js';
import type { Message, HandleId, SliceOwner } from './message.js';
import { type PeerTicket, checkTicket, heldPort } from './ticket.js';
import { Layer, type PeerCore } from './router.js';
import { takeSpawnedTicket } from './spawn.js';
import { sendWaiting } from './waiting.js';
import { request, type RequestOptions } from './request.js';
import { subscribe, Topic, type Subscription } from './topic.js';
import type { SendOptions, MulticastOptions, SendReport, PostReport, QueryResult } from './peer/types.js';
import { PeerLink, shutdown, invalid, checkHandleId } from './peer/link.js';
import { K_SEND, K_QUERY, K_VOID, K_PARTIAL, K_BARRIER, WAIT_CHUNK_MS } from './peer/acks.js';
import { PeerParts } from './peer/parts.js';
import { watchThread, OPENED_HERE, type ThreadWatch } from './peer/watch.js';

export type { SendOptions, MulticastOptions, SendReport, PostReport, QueryResult };

/** The body of OP_RESUME: no id, nothing else; shared, never written. */
const RESUME_BODY = new Uint8Array(8);

/** Options are an object (or absent); `partial`, when given, a boolean. */
function checkOptions(opts: unknown, what: string): void {
  if (opts === undefined || opts === null) return;
  if (typeof opts !== 'object') throw invalid(`${what}: options must be an object, got ${typeof opts}`);
  const partial = (opts as MulticastOptions).partial;
  if (partial !== undefined && typeof partial !== 'boolean') throw invalid(`${what}: opts.partial must be true or false`);
}

/** A small request body: its reqId and one more word. */
function body2(reqId: number, arg: number): Uint8Array {
  return new Uint8Array(new Int32Array([reqId, arg]).buffer);
}

/** A peer's layer, made on demand (one function for every peer: the inbox keeps no closure). */
let layerOf: (peer: object) => Layer;

export class Peer implements AsyncIterable<Message>, SliceOwner {
  readonly uid: number;
  /** Named nodes and handles this peer was given by bus.spawn() (empty for Peer.open(ticket)). */
  readonly handles: Readonly<Record<string, HandleId>>;
  /**
   * The everyday layer: request/reply, subscriptions, routing (src/router.ts). Made at
   * its first use (the first message read, request, subscription or topic), as is the
   * #core it is given: a peer that idles builds neither.
   */
  #layerObj: Layer | null = null;
  #coreObj: PeerCore | null = null;
  #link: PeerLink;
  /** The send path, the request pump and the receive path, made at their first use (src/peer/parts.ts). */
  readonly #parts: PeerParts;

  private constructor(ticket: PeerTicket, handles: Readonly<Record<string, HandleId>>, watch: ThreadWatch, ctl: Int32Array) {
    this.uid = ticket.uid;
    this.handles = handles;
    this.#link = new PeerLink(ticket, watch, ctl);
    this.#parts = new PeerParts(this.#link, this, layerOf);
  }

  static {
    layerOf = (peer) => (peer as Peer).#layer;
  }

  get #layer(): Layer {
    return this.#layerObj ??= new Layer(this, this.#core);
  }

  get #core(): PeerCore {
    return this.#coreObj ??= this.#makeCore();
  }

  /**
   * Open the peer a ticket names. A ticket can be opened once. With no argument: the peer
   * that bus.spawn() prepared for this worker, with its named nodes and handles.
   */
  static open(ticket?: PeerTicket): Peer {
    let handles: Readonly<Record<string, HandleId>> = NO_NAMES;
    if (ticket === undefined) ({ ticket, handles } = takeSpawnedTicket());
    checkTicket(ticket, 'Peer.open');
    // The control block, kept by the peer's link.
    const ctl = new Int32Array(ticket.ctlSab);
    // The watch goes out before the claim: a thread that dies holding a claimed ticket has sent it.
    const watch = watchThread(ticket.busThread);
    if (Atomics.compareExchange(ctl, CTL_OPENED, 0, OPENED_HERE) !== 0) {
      throw invalid('Peer.open: this ticket was already used; ask the bus owner for a new one');
    }
    Atomics.notify(ctl, CTL_OPENED); // bus.spawn() waits for this
    // Claimed: the thread's watch covers this peer now, and the ticket's own port can go.
    heldPort(ticket)?.close();
    if (Atomics.load(ctl, CTL_STATE) !== STATE_OPEN) throw shutdown('Peer.open');
    return new Peer(ticket, handles, watch, ctl);
  }

  /** True until close(), disconnection by the coordinator, or bus shutdown. */
  get isOpen(): boolean {
    return this.#link.isOpen();
  }

  /** Why the coordinator cut this peer off, if it did: 'protocol' (bad requests) or 'thread-exit'. */
  get disconnectReason(): 'protocol' | 'thread-exit' | null {
    const r = Atomics.load(this.#link.ctl, CTL_REASON);
    return r === 0 ? null : r === REASON_PROTOCOL ? 'protocol' : 'thread-exit';
  }

  // ---- nodes and handles ------------------------------------------------------------------

  /** A new node owned by this peer; returns this peer's handle id for it. */
  createNode(): HandleId {
    return this.#parts.acks.syncRequest('createNode', OP_CREATE_NODE, 0);
  }

  /** Drop one reference to a handle (bus1 HANDLE_RELEASE). */
  releaseHandle(h: HandleId): void {
    checkHandleId(h, 'releaseHandle');
    this.#parts.acks.syncRequest('releaseHandle', OP_RELEASE_HANDLE, h);
  }

  /** Destroy nodes this peer owns, in one transaction: every holder gets node-destroy. */
  destroyNodes(nodes: HandleId[]): Promise<void> {
    try {
      this.#parts.outbox.assertOpen('destroyNodes');
      if (!Array.isArray(nodes)) throw invalid('destroyNodes: expects an array of handle ids');
      if (nodes.length > MAX_DESTINATIONS) throw invalid(`destroyNodes: at most ${MAX_DESTINATIONS} nodes at once`);
      const seen = new Set<number>();
      for (const h of nodes) {
        checkHandleId(h, 'destroyNodes');
        if (seen.has(h)) throw new BusError('ENOTUNIQ', `destroyNodes: handle ${h} is named twice`);
        seen.add(h);
      }
      const reqId = this.#link.takeReq();
      const body = new Int32Array(2 + nodes.length);
      body[0] = reqId;
      body[1] = nodes.length;
      body.set(nodes, 2);
      this.#parts.outbox.writeRecord(OP_DESTROY_NODES, new Uint8Array(body.buffer));
      return this.#parts.acks.expect(reqId, K_VOID, 'destroyNodes') as Promise<void>;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The peer's limits and what remains of them (bus1 PEER_QUERY). */
  query(): Promise<QueryResult> {
    try {
      this.#parts.outbox.assertOpen('query');
      const reqId = this.#link.takeReq();
      this.#parts.outbox.writeRecord(OP_QUERY, body2(reqId, 0));
      return this.#parts.acks.expect(reqId, K_QUERY, 'query') as Promise<QueryResult>;
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
      const reqId = this.#parts.outbox.writeSend('send', to, data, handles, flags);
      return this.#parts.acks.expect(reqId, partial ? K_PARTIAL : K_SEND, partial ? (to as HandleId[]).slice() : null) as Promise<void | SendReport>;
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
  #makeCore(): PeerCore {
    return {
      send: (to, data, handles, flags) => this.#sendFlags(to, data, handles, flags),
      recvRing: () => this.#parts.inbox.recvRing(),
      headWord: () => Atomics.load(this.#link.desc.ctl, RING_HEAD),
      sleepHead: (seen) => this.#parts.inbox.waitHead(seen),
      createNodeLater: () => {
        const reqId = this.#link.takeReq();
        this.#parts.outbox.writeRecord(OP_CREATE_NODE, body2(reqId, 0));
        return this.#parts.acks.expect(reqId, K_SEND, 'createNode') as Promise<HandleId>; // the verdict's detail is the id
      },
      wakeHead: () => Atomics.notify(this.#link.desc.ctl, RING_HEAD),
      wakeWord: () => this.#link.ctl,
      isOpen: () => this.isOpen,
      writeWait: (uid, flags) => this.#parts.outbox.writeRecord(OP_WAIT, new Uint8Array(new Int32Array([0, uid, flags]).buffer)),
      // reqId 0: no verdict and no wait; the record is ordered after everything written before it.
      releaseLater: (h) => this.#parts.outbox.writeRecord(OP_RELEASE_HANDLE, body2(0, h)),
    };
  }

  /**
   * The high-throughput form of send: no promise per message. Returns the request id;
   * bad arguments throw at once, and every message the coordinator rejects is reported
   * by the next flush() with its id and BusError.
   */
  post(to: HandleId | HandleId[], data: unknown, opts?: SendOptions): number {
    checkOptions(opts, 'post');
    // The outbox notes a written post for flush(), or refuses it at once behind a refused one.
    return this.#parts.outbox.writeSend('post', to, data, opts?.handles, SEND_FLAG_STREAM, true);
  }

  /**
   * Wait until every post() so far has a verdict; returns (and forgets) the rejected ones.
   * Posts are a stream: once one is refused, every later one is refused with the same
   * error until flush() is called, so the rejected posts of a flush are always the last
   * ones, in order, and can be posted again as they are. Posts after flush() are
   * attempted afresh.
   */
  flush(): Promise<PostReport> {
    const acks = this.#parts.acks;
    acks.settle();
    // Refusals from before a shutdown are still reported; after that, like every call, ESHUTDOWN.
    const posts = acks.posts;
    if (!posts.inFlight && posts.rejectedCount === 0 && this.isOpen) return Promise.resolve(posts.take());
    if (!this.isOpen) return posts.rejectedCount > 0 ? Promise.resolve(posts.take()) : Promise.reject(shutdown('flush'));
    this.#parts.outbox.writeRecord(OP_RESUME, RESUME_BODY);
    posts.resume();
    if (!posts.inFlight) return Promise.resolve(posts.take());
    return acks.expect(posts.lastPost, K_BARRIER, 'flush') as Promise<PostReport>;
  }

  /**
   * One copy for large payloads: reserve a post() of `bytes` bytes to `to` in the OUT
   * ring and return a view of its payload to fill in place; postReserved() then posts it
   * (the coordinator's copy into the receiver's pool is the only copy). The view must
   * not be used after postReserved() or cancelReserved(). While a reservation is open the
   * ring cannot publish, so every other request fails with EBUSY (releases wait).
   */
  reserve(to: HandleId, bytes: number): Uint8Array {
    return this.#parts.outbox.reserve(to, bytes);
  }

  /** Post the message reserve() opened; returns its id, as post() does. */
  postReserved(): number {
    const outbox = this.#parts.outbox;
    if (outbox.resAt < 0) throw invalid('postReserved: no message is reserved');
    const reqId = outbox.resReq;
    this.#parts.acks.notePost(reqId);
    outbox.endReserved(false);
    return reqId;
  }

  /** Give up the message reserve() opened: it becomes a record the coordinator skips. */
  cancelReserved(): void {
    if (this.#parts.outbox.resAt >= 0) this.#parts.outbox.endReserved(true);
  }

  // ---- receive --------------------------------------------------------------------------

  /**
   * The next message or notification, or undefined when none is queued. Never waits: a
   * message whose pool segment has not reached this thread yet (right after open, while
   * Node's main thread is busy: src/peer/pool-map.ts) counts as not queued yet.
   */
  tryRecv(): Message | undefined {
    const link = this.#link;
    if (link.closed || Atomics.load(link.ctl, CTL_STATE) !== STATE_OPEN || link.coordinatorGone) {
      throw shutdown('recv');
    }
    // Only a layer that exists can have stashed messages.
    return this.#layerObj?.unstash() ?? this.#parts.inbox.recvRing();
  }

  /** The next message; waits for one. Rejects with ESHUTDOWN once the peer is closed. */
  async recv(opts?: { signal?: AbortSignal }): Promise<Message> {
    checkOptions(opts, 'recv');
    const signal = opts?.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('recv: opts.signal must be an AbortSignal');
    const head = this.#link.desc.ctl;
    for (;;) {
      // Read before looking, so that a publish in between wakes the wait below.
      const seen = Atomics.load(head, RING_HEAD);
      const m = this.tryRecv();
      if (m !== undefined) return m;
      if (signal?.aborted) throw signal.reason;
      if (this.#parts.inbox.segmentLate) {
        await this.#parts.inbox.napAsync();
        continue;
      }
      const since = performance.now();
      if (this.#parts.inbox.spin(seen)) continue;
      await this.#parts.inbox.sleepHead(seen, signal, since);
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
    const head = this.#link.desc.ctl;
    // Sends of a burst may owe the coordinator its bell (src/peer/outbox.ts): a reply to them cannot come before it.
    this.#parts.outbox.ringOwed();
    for (;;) {
      const seen = Atomics.load(head, RING_HEAD);
      const m = this.tryRecv();
      if (m !== undefined) return m;
      const now = performance.now();
      const left = deadline - now;
      if (left <= 0) return undefined;
      if (this.#parts.inbox.segmentLate) this.#parts.inbox.napSync(left);
      else this.#parts.inbox.waitSync(seen, now, Math.min(left, WAIT_CHUNK_MS));
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

  /** @internal SLICE_RELEASE (Message.release() calls the Inbox directly; kept for SliceOwner). */
  releaseSlice(offset: number): void {
    this.#parts.inbox.releaseSlice(offset);
  }

  // ---- close --------------------------------------------------------------------------

  /** Disconnect: nodes destroyed (holders told), handles released, queue dropped. Later calls: ESHUTDOWN. */
  async close(): Promise<void> {
    if (this.isOpen) this.cancelReserved();
    this.#parts.outbox.assertOpen('close');
    const reqId = this.#link.takeReq();
    this.#parts.outbox.writeRecord(OP_CLOSE, body2(reqId, 0));
    try {
      await this.#parts.acks.expect(reqId, K_VOID, 'close');
    } catch (e) {
      // Shut down underneath us: closed all the same.
      if (!(e instanceof BusError && e.code === 'ESHUTDOWN')) throw e;
    } finally {
      const link = this.#link;
      this.#parts.inbox.releaseSpin();
      link.closed = true;
      link.detach();
    }
  }
}

const NO_NAMES: Readonly<Record<string, HandleId>> = Object.freeze({});
