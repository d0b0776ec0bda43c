/*
 * Acks: a peer's request pump (bus1 peer.c, the answers). Peer thread only;
 * module-private (Peer holds it in a # field).
 *
 * Every request that can fail carries a reqId (u32, never 0). The coordinator processes
 * a peer's requests in order, writes a verdict record only for a failure or a request
 * that returns values, and then publishes CTL_ACKED = the last reqId it processed. So
 * the peer learns "everything up to N succeeded, except those with a verdict" from one
 * word; success costs no record, and many sends are settled by one load. Pending
 * requests live in a FIFO in reqId order; post()s have no entry: a verdict that matches
 * no entry is a rejected post.
 *
 * This thread is the single consumer of its verdict ring. While the user keeps making
 * requests, each SETTLE_EVERY-th of them settles what was acknowledged meanwhile (one load
 * of CTL_ACKED), and nothing else runs per request. The pump watches for the rest: it runs
 * once as a microtask after a request made while it was idle, and whenever the user is
 * still acting, again only once the user's microtasks have all run (setImmediate: the user
 * waits for something); then it settles, and once nothing moves it spins briefly and
 * sleeps (async, bounded) on CTL_ACKED or on the OUT tail. While such a later run is
 * pending the user is sending in a burst, and the outbox may owe the coordinator's bell
 * (Outbox.deferBell); the pump and every blocking wait here ring it first.
 * The blocking waits here (synchronous requests, post() backpressure) spin, then sleep
 * in bounded chunks and re-check the peer, so shutdown, disconnection or a dead
 * coordinator surface as ESHUTDOWN, never a hang.
 *
 * Owns: the pending requests (./pending.ts), the post stream (./post-stream.ts), the last
 * synchronous request's outcome.
 */

import {
  CTL_STATE, CTL_ACKED, CTL_ACK_WAITING, STATE_CLOSED, V_REQ, V_CODE, V_RESOURCE, V_DETAIL, V_VALUES_F64,
  VERDICT_SLOTS, VERDICT_SLOT_BYTES, RING_TAIL, RING_PRODUCER_SLEEPING,
} from '../../shared/layout.js';
import { SlotRingReader, RING_EMPTY } from '../../shared/ring.js';
import { SPIN_LOADS, spinWhileEqual, sleepWhileEqual, sleepWhileEqualAsync } from '../../shared/wait.js';
import { BusError } from '../errors.js';
import type { HandleId } from '../message.js';
import type { PeerTicket } from '../ticket.js';
import type { SendReport } from './types.js';
import { type PeerLink, shutdown } from './link.js';
import { type Outbox, SYNC_TIMEOUT_MS } from './outbox.js';
import { PendingRequests, after, type Resolve, type Reject } from './pending.js';
import { PostStream, quietError } from './post-stream.js';

/** Sleep chunk of blocking waits; state is re-checked after each. */
export const WAIT_CHUNK_MS = 100;

/** What a pending request resolves to (see finish()). */
export const K_SEND = 1, K_QUERY = 3, K_VOID = 4, K_SYNC = 5, K_PARTIAL = 6, K_BARRIER = 7;


/** The resolving functions of the promise being made by expect() (capture() sets them). */
let capturedResolve: Resolve | null = null;
let capturedReject: Reject | null = null;

/** The one executor of every expect() promise: no closure per request. */
function capture(resolve: Resolve, reject: Reject): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/**
 * Requests between two looks at CTL_ACKED while the user keeps making them (its cache line
 * is the coordinator's: a load per send was a cache miss per send).
 */
const SETTLE_EVERY = 64;

/** Schedules the pump as a plain microtask: queueMicrotask() costs three times as much (an async resource each). */
const RESOLVED = Promise.resolve();


export class Acks {
  readonly #link: PeerLink;
  readonly #outbox: Outbox;
  readonly #verdicts: SlotRingReader;
  /** Requests waiting for their verdict, in reqId order (./pending.ts). */
  readonly #p = new PendingRequests();
  /** CTL_ACKED as of the last settle(): nothing new to settle until it moves. */
  #settledAck = 0;
  /** Requests pended so far, and their count when the pump was scheduled (did the user act in between?). */
  #pended = 0;
  #pendedAtPump = 0;
  /** #pended when the pump last settled. */
  #pendedAtSettle = 0;
  // The front request's outcome so far, from its verdicts (only the front can have one).
  #headError: BusError | null = null;
  #headValue: unknown = undefined;
  #headRefused: SendReport['refused'] | null = null;
  /** The post() stream between two flush() calls (./post-stream.ts). */
  readonly posts = new PostStream();
  #postsSinceSettle = 0;
  #pumpScheduled = false;
  #pumpSleeping = false;
  #pumpFn = () => this.#pump();
  #pumpLaterFn = () => {
    this.#pumpScheduled = false;
    this.#outbox.deferBell = false;
    this.#watch();
  };
  // The last synchronous request's outcome.
  #syncDone = false;
  #syncError: BusError | null = null;
  #syncValue = 0;
  #small: Int32Array;
  #smallU8: Uint8Array;

  constructor(m: Pick<PeerTicket, 'inSab' | 'verdictOffset'>, link: PeerLink, outbox: Outbox) {
    this.#link = link;
    this.#outbox = outbox;
    this.#verdicts = new SlotRingReader(m.inSab, m.verdictOffset, VERDICT_SLOTS, VERDICT_SLOT_BYTES);
    this.#settledAck = Atomics.load(link.ctl, CTL_ACKED) >>> 0;
    const s = link.scratch;
    this.#small = s.subarray(s.length - 2);
    this.#smallU8 = new Uint8Array(s.buffer, s.byteOffset + 4 * (s.length - 2), 8);
  }

  /** A promise for request `reqId`'s verdict; `extra` is the op's name, or a partial send's destinations. */
  expect(reqId: number, kind: number, extra: unknown): Promise<unknown> {
    const p = new Promise(capture);
    this.#pend(reqId, kind, capturedResolve, capturedReject, extra);
    capturedResolve = capturedReject = null;
    return p;
  }

  #pend(reqId: number, kind: number, resolve: Resolve | null, reject: Reject | null, extra: unknown): void {
    this.#p.push(reqId, kind, resolve, reject, extra);
    // Settling here rather than in the pump lets a user who keeps sending go on without a
    // pump run (a microtask) per send; the resolutions only queue the user's reactions.
    if (++this.#pended - this.#pendedAtSettle >= SETTLE_EVERY) {
      this.#pendedAtSettle = this.#pended;
      this.settle();
    }
    this.schedulePump();
  }

  /**
   * A post was written (the id flush() waits for). Every SETTLE_EVERY posts, look at the
   * verdicts: a refusal seen early spares the coordinator the posts behind it (refusePost).
   */
  notePost(reqId: number): void {
    this.posts.written(reqId);
    if (++this.#postsSinceSettle >= SETTLE_EVERY) {
      this.#postsSinceSettle = 0;
      this.settle();
    }
  }


  schedulePump(): void {
    if (!this.#pumpScheduled && !this.#pumpSleeping) {
      this.#pumpScheduled = true;
      this.#pendedAtPump = this.#pended;
      void RESOLVED.then(this.#pumpFn);
    }
  }

  /**
   * The pump's first run after a request made while it was idle (a microtask, right after
   * the user's code in progress). If the user has made more requests since, they are still
   * at work, and spinning now would hold up a sender with more to write: the pump looks
   * again once the user's microtasks have all run (pend() settles every SETTLE_EVERY
   * requests meanwhile). Otherwise the user waits: watch.
   */
  #pump(): void {
    this.#pumpScheduled = false;
    if (this.#pended !== this.#pendedAtPump && this.#outbox.backlog.length === 0) {
      this.#pumpLater();
      return;
    }
    this.#watch();
  }

  /**
   * Settle what the coordinator has acknowledged, move the backlog in, and keep watching
   * while anything is pending: after progress, look again once the continuations it let
   * run have run (the user may make more requests, or wait again); when nothing moved,
   * spin, then sleep (async, bounded) on CTL_ACKED or the OUT tail.
   */
  #watch(): void {
    const out = this.#outbox;
    out.ringOwed();
    for (;;) {
      // Read before looking, so that progress in between wakes the wait below.
      const seenAck = Atomics.load(this.#link.ctl, CTL_ACKED);
      const waitSpace = out.backlog.length > 0;
      const seenTail = waitSpace ? Atomics.load(out.out.ctl, RING_TAIL) : 0;
      const settled = this.#p.head;
      this.#pendedAtSettle = this.#pended;
      this.settle();
      if ((!waitSpace || out.flushBacklog()) && this.#p.head === this.#p.tail) return;
      if (this.#p.head !== settled) {
        this.#pumpLater();
        return;
      }
      if (!this.#link.isOpen()) {
        this.failAll();
        return;
      }
      const ctl = waitSpace ? out.out.ctl : this.#link.ctl;
      const index = waitSpace ? RING_TAIL : CTL_ACKED;
      const seen = waitSpace ? seenTail : seenAck;
      if (spinWhileEqual(ctl, index, seen, SPIN_LOADS)) continue;
      const r = sleepWhileEqualAsync(ctl, index, seen, waitSpace ? RING_PRODUCER_SLEEPING : CTL_ACK_WAITING, 1000);
      if (typeof r === 'string') continue;
      this.#pumpSleeping = true;
      void r.then(() => {
        this.#pumpSleeping = false;
        this.#watch();
      });
      return;
    }
  }

  /** Run #watch() once the user's microtasks have all run. */
  #pumpLater(): void {
    this.#pumpScheduled = true;
    // Until then the user is sending in a burst: the bell may wait (Outbox.commitSend()).
    this.#outbox.deferBell = true;
    setImmediate(this.#pumpLaterFn);
  }

  /**
   * Settle everything the coordinator has acknowledged (up to CTL_ACKED), in one pass:
   * verdict records are matched, in order, to pending entries; one that matches no entry
   * is a rejected post(). Entries without a verdict succeeded. The coordinator writes a
   * batch's verdicts before it publishes CTL_ACKED, so while CTL_ACKED stays where the
   * last pass saw it there is nothing to do.
   */
  settle(): void {
    const acked = Atomics.load(this.#link.ctl, CTL_ACKED) >>> 0;
    if (acked === this.#settledAck) return;
    this.#settledAck = acked;
    const v = this.#verdicts;
    let consumed = false;
    for (;;) {
      const at = v.read();
      if (at === RING_EMPTY) break;
      const vreq = v.i32[at + V_REQ] >>> 0;
      if (after(vreq, acked)) break;
      // Entries before this verdict had none: they succeeded.
      while (this.#p.head !== this.#p.tail && after(vreq, this.#p.reqs[this.#p.head & this.#p.mask])) this.#finishHead();
      const h = this.#p.head & this.#p.mask;
      const owned = this.#p.head !== this.#p.tail && this.#p.reqs[h] === vreq && this.#p.kinds[h] !== K_BARRIER;
      const kind = owned ? this.#p.kinds[h] : 0;
      const extra = owned ? this.#p.extras[h] : null;
      const code = v.i32[at + V_CODE];
      const f = (at >> 1) + V_VALUES_F64;
      const name = !owned ? 'post' : typeof extra === 'string' ? extra : opName(kind);
      if (code !== 0) {
        const detail = v.i32[at + V_DETAIL] >>> 0;
        const err = quietError(name, code, v.i32[at + V_RESOURCE], detail, v.f64[f]);
        if (!owned) this.posts.refused(vreq, err, code, v.i32[at + V_RESOURCE], detail, v.f64[f]);
        // A partial send's refusal of one destination is EDQUOT or ESHUTDOWN; any other code refused the whole request.
        else if (kind === K_PARTIAL && (err.code === 'EDQUOT' || err.code === 'ESHUTDOWN')) (this.#headRefused ??= []).push({ destination: detail, error: err });
        else this.#headError = err;
      } else if (owned && kind === K_QUERY) {
        this.#headValue = {
          limits: { messages: v.f64[f], handles: v.f64[f + 1], bytes: v.f64[f + 2] },
          remaining: { messages: v.f64[f + 3], handles: v.f64[f + 4], bytes: v.f64[f + 5] },
        };
      } else if (owned) {
        this.#headValue = v.i32[at + V_DETAIL] >>> 0;
      }
      v.consume();
      consumed = true;
    }
    if (consumed) v.release();
    // Everything up to `acked` without a verdict succeeded. A plain send with no verdict
    // (the common case) resolves here directly; the front can only have an outcome
    // (#headError and the rest) from a verdict, and the first entry finished takes it.
    const p = this.#p, reqs = p.reqs, kinds = p.kinds, resolves = p.resolves, mask = p.mask;
    while (p.head !== p.tail) {
      const h = p.head & mask;
      if (after(reqs[h], acked)) break;
      if (kinds[h] === K_SEND && this.#headError === null && this.#headValue === undefined) {
        p.head++;
        const resolve = resolves[h]!;
        p.clear(h);
        resolve(undefined);
      } else {
        this.#finishHead();
      }
    }
    this.posts.acked(acked);
  }

  /** Settle the front request with its outcome (#headError, #headValue, #headRefused) and move past it. */
  #finishHead(): void {
    const h = this.#p.head++ & this.#p.mask;
    const error = this.#headError, value = this.#headValue, refused = this.#headRefused;
    this.#headError = null;
    this.#headValue = undefined;
    this.#headRefused = null;
    const resolve = this.#p.resolves[h], reject = this.#p.rejects[h], extra = this.#p.extras[h];
    this.#p.clear(h);
    switch (this.#p.kinds[h]) {
      case K_SYNC:
        this.#syncDone = true;
        this.#syncError = error;
        this.#syncValue = typeof value === 'number' ? value : 0;
        break;
      case K_BARRIER:
        resolve!(this.posts.take());
        break;
      case K_PARTIAL: {
        if (error !== null) {
          reject!(error);
          break;
        }
        const r = refused ?? [];
        const no = new Set(r.map((x) => x.destination));
        resolve!({ delivered: (extra as HandleId[]).filter((d) => !no.has(d)), refused: r });
        break;
      }
      default:
        if (error !== null) reject!(error);
        else resolve!(value);
    }
  }

  /** The peer is shut down: everything still pending fails with ESHUTDOWN. */
  failAll(): void {
    this.settle();
    const closedByUs = Atomics.load(this.#link.ctl, CTL_STATE) === STATE_CLOSED;
    while (this.#p.head !== this.#p.tail) {
      const h = this.#p.head++ & this.#p.mask;
      const kind = this.#p.kinds[h], extra = this.#p.extras[h];
      const resolve = this.#p.resolves[h], reject = this.#p.rejects[h];
      this.#p.clear(h);
      const err = shutdown(typeof extra === 'string' ? extra : opName(kind));
      if (kind === K_SYNC) {
        this.#syncDone = true;
        this.#syncError = err;
      } else if (kind === K_VOID && closedByUs) {
        resolve!(undefined);
      } else {
        reject!(err);
      }
    }
    this.#headError = null;
    this.#headValue = undefined;
    this.#headRefused = null;
    this.#outbox.backlog.length = 0;
  }

  /** A request that must be answered before returning (createNode, releaseHandle); returns the verdict's value. */
  syncRequest(what: string, op: number, arg: number): number {
    const out = this.#outbox;
    out.assertOpen(what);
    this.#link.publishTail();
    const deadline = performance.now() + SYNC_TIMEOUT_MS;
    // Everything queued earlier goes first, to keep this peer's requests in order.
    while (!out.flushBacklog()) this.blockForSpace(deadline, what);
    const reqId = this.#link.takeReq();
    const body = this.#small;
    body[0] = reqId;
    body[1] = arg;
    let at: number;
    while ((at = out.out.reserve(8, op)) < 0) this.blockForSpace(deadline, what);
    out.out.u8.set(this.#smallU8, at);
    out.commit();
    this.#syncDone = false;
    this.#syncError = null;
    this.#pend(reqId, K_SYNC, null, null, what);
    const ctl = this.#link.ctl;
    for (;;) {
      const seen = Atomics.load(ctl, CTL_ACKED);
      this.settle();
      if (this.#syncDone) break;
      this.#blockOn(ctl, CTL_ACKED, CTL_ACK_WAITING, seen, deadline, what);
    }
    if (this.#syncError !== null) throw this.#syncError;
    return this.#syncValue;
  }

  /** Wait (blocking) for the coordinator to free OUT ring space, draining verdicts meanwhile so it is never stuck on us. */
  blockForSpace(deadline: number, what: string): void {
    const out = this.#outbox.out;
    // The tail that made the last reserve() fail: any release since then ends the wait.
    const seen = out.tailSeen | 0;
    this.settle();
    this.#blockOn(out.ctl, RING_TAIL, RING_PRODUCER_SLEEPING, seen, deadline, what);
  }

  /** One bounded blocking wait on a word; throws ESHUTDOWN when the peer is shut down or the coordinator is stuck. */
  #blockOn(ctl: Int32Array, index: number, flag: number, seen: number, deadline: number, what: string): void {
    this.#outbox.ringOwed();
    if (!this.#link.isOpen()) {
      this.failAll();
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

function opName(kind: number): string {
  switch (kind) {
    case K_SEND: case K_PARTIAL: return 'send';
    case K_QUERY: return 'query';
    default: return 'request';
  }
}
