/*
 * Inbox: a peer's receive path (bus1 peer.c, RECV and SLICE_RELEASE). Peer thread only;
 * module-private (Peer holds it in a # field).
 *
 * This thread is the single consumer of its descriptor ring (PeerLink.desc) and reads
 * payloads in place from its pool: a data Message is a view of the pool, valid until
 * released. A descriptor names a pool address; PoolMap (./pool-map.ts) says which
 * segment holds it, mapping segments as the coordinator hands them over. Receipts (the
 * descriptor tail) are published in batches (PeerLink.consumed); releases are gathered
 * into OP_RELEASE_SLICES records (releaseSlice below), written through the Outbox.
 *
 * Waiting for a message: spin briefly, then sleep with the ring's consumer-sleeping
 * flag raised, so that the coordinator notifies only when this thread really sleeps
 * (shared/wait.ts). Every wait is bounded and re-checks the peer's state.
 *
 * Owns: the release batch, the pool map and the count of async receivers asleep; is the
 * SliceOwner of every data Message it creates. The everyday layer (src/router.ts) sees each message
 * first and may take it (replies, events).
 */

import {
  OP_RELEASE_SLICES, RELEASE_BATCH, D_KIND, D_DEST, D_OFFSET, D_BYTES, D_SEQ_F64, D_UID_F64, KIND_DATA,
  KIND_NODE_DESTROY, KIND_NODE_RELEASE, KIND_CLAIMED, KIND_MASK, DESC_CONTINUE, DESC_NHANDLES_SHIFT,
  DESC_NHANDLES_MASK, TAG_SHIFT, RING_HEAD, RING_CONSUMER_SLEEPING, RING_HEADER_BYTES, DESC_SLOT_BYTES,
  BELL_SPIN_SLOTS,
} from '../../shared/layout.js';
import { RING_EMPTY } from '../../shared/ring.js';
import {
  PEER_SPINNERS, SPIN_LOADS, Spinner, sleepWhileEqual, sleepWhileEqualAsync, spinWhileEqual, type WaitResult,
} from '../../shared/wait.js';
import { Message, type HandleId, type SliceOwner } from '../message.js';
import type { Layer } from '../router.js';
import type { PeerLink } from './link.js';
import type { Outbox } from './outbox.js';
import { PoolMap } from './pool-map.js';

const RESOLVED = Promise.resolve();

/** A word nobody writes: Atomics.wait on it is a bounded sleep (allowed in workers and in Node's main thread). */
const napping = new Int32Array(new SharedArrayBuffer(4));

export class Inbox implements SliceOwner {
  readonly #link: PeerLink;
  readonly #outbox: Outbox;
  readonly #pool: PoolMap;
  /** The peer's layer, asked of `#owner` at the first message (an idle peer has none). */
  #layer: Layer | null = null;
  readonly #owner: object;
  readonly #layerOf: (owner: object) => Layer;
  #asyncRecvWaiters = 0;
  /** The release batch (in link.scratch), made at the first release: an idle peer has none. */
  #releases: Int32Array | null = null;
  /** A flush of receipts and releases is queued for the end of this task (one microtask per task, not one each). */
  #flushQueued = false;
  #flushFn: (() => void) | null = null;
  /** How long a receive spins before it sleeps (shared/wait.ts Spinner): one per peer, made at its first wait. */
  #spinnerObj: Spinner | null = null;
  /** PeerLink.nextReq at the last wait: a wait after a request is waiting for an answer. */
  #reqAtWait = 0;

  constructor(link: PeerLink, outbox: Outbox, owner: object, layerOf: (owner: object) => Layer) {
    this.#link = link;
    this.#outbox = outbox;
    this.#owner = owner;
    this.#layerOf = layerOf;
    // The pool's first segment follows the descriptor ring (shared/layout.ts).
    const desc = link.desc;
    this.#pool = new PoolMap(link, desc.ctl.byteOffset + RING_HEADER_BYTES + desc.slots * DESC_SLOT_BYTES);
  }

  get #spinner(): Spinner {
    return this.#spinnerObj ??= new Spinner(this.#link.doorbell, BELL_SPIN_SLOTS, PEER_SPINNERS);
  }

  /**
   * One bounded blocking wait (recvSync) until the descriptor head moves from `seen`,
   * which was read at `since`: spin (adaptively), then sleep with the ring's sleeping flag
   * raised, so that the coordinator notifies only a receiver that really sleeps.
   */
  waitSync(seen: number, since: number, timeoutMs: number): WaitResult {
    const head = this.#link.desc.ctl;
    if (this.spin(seen)) return 'not-equal';
    const r = sleepWhileEqual(head, RING_HEAD, seen, RING_CONSUMER_SLEEPING, timeoutMs);
    if (r !== 'timed-out') this.#spinner.woke(since);
    return r;
  }

  /** The next message from the ring that the layer does not take for itself (replies, events...). */
  recvRing(): Message | undefined {
    const link = this.#link;
    const desc = link.desc;
    const i32 = desc.i32;
    for (;;) {
      const at = desc.read();
      if (at === RING_EMPTY) {
        // About to wait, or to return to a caller that may: let the coordinator see our receipts and releases.
        this.flushReleases();
        return undefined;
      }
      const word = i32[at + D_KIND];
      let kind = word & KIND_MASK;
      if (kind === KIND_NODE_RELEASE) {
        // The coordinator may withdraw it concurrently; claim it first.
        if (Atomics.compareExchange(i32, at + D_KIND, KIND_NODE_RELEASE, KIND_CLAIMED) !== KIND_NODE_RELEASE) kind = 0;
      }
      if (kind !== KIND_DATA && kind !== KIND_NODE_DESTROY && kind !== KIND_NODE_RELEASE) {
        desc.consume();
        link.consumed();
        if (!this.#flushQueued) this.#queueFlush();
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
        const pool = this.#pool;
        const seg = pool.segmentAt(offset);
        if (seg === null) {
          // Its segment is late (pool-map.ts): the message stays queued, and the caller waits as it may.
          this.flushReleases();
          return undefined;
        }
        const byte = offset + seg.delta;
        let handles: HandleId[] | null = null;
        if (nh > 0) {
          handles = new Array(nh);
          const hw = (byte + ((bytes + 3) & ~3)) >> 2;
          for (let i = 0; i < nh; i++) handles[i] = seg.i32[hw + i] >>> 0;
        }
        msg = new Message('data', dest, pool.view(seg, offset, bytes), handles, uid, seq,
          (word & DESC_CONTINUE) !== 0, this, offset, word >>> TAG_SHIFT, this.#layer ??= this.#layerOf(this.#owner));
      } else {
        msg = new Message(kind === KIND_NODE_DESTROY ? 'node-destroy' : 'node-release', dest, null, null, uid, seq,
          (word & DESC_CONTINUE) !== 0, null, 0);
      }
      desc.consume();
      link.consumed();
      if (!this.#flushQueued) this.#queueFlush();
      if ((this.#layer ??= this.#layerOf(this.#owner)).route(msg)) continue;
      return msg;
    }
  }

  /** One bounded event-loop sleep until the descriptor head moves from `seen` (read at `since`). */
  async sleepHead(seen: number, signal?: AbortSignal, since = performance.now()): Promise<void> {
    const head = this.#link.desc.ctl;
    this.#asyncRecvWaiters++;
    Atomics.store(head, RING_CONSUMER_SLEEPING, 1);
    try {
      const p = sleepWhileEqualAsync(head, RING_HEAD, seen, -1, 1000);
      const r = typeof p === 'string' ? p : signal === undefined ? await p : await abortable(p, signal, () => Atomics.notify(head, RING_HEAD));
      if (r === 'ok') this.#spinner.woke(since);
    } finally {
      if (--this.#asyncRecvWaiters === 0) Atomics.store(head, RING_CONSUMER_SLEEPING, 0);
    }
  }

  /** True when the next message is queued but its pool segment has not come yet (recvRing returned undefined for it). */
  get segmentLate(): boolean {
    return this.#pool.late;
  }

  /** Wait a little for a late segment, blocking (at most `ms`, 1 ms at most). */
  napSync(ms: number): void {
    Atomics.wait(napping, 0, 0, Math.min(ms, 1));
  }

  /** The same on the event loop (recv(), the everyday layer): a timer keeps the thread alive meanwhile. */
  napAsync(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, 1));
  }

  /** Spin first, as recv() does (a reply often lands within microseconds), then sleepHead(); a late segment is waited for on the event loop. */
  waitHead(seen: number): Promise<void> {
    if (this.#pool.late) return this.napAsync();
    const since = performance.now();
    return this.spin(seen) ? Promise.resolve() : this.sleepHead(seen, undefined, since);
  }

  /** Give up this peer's spin slot (the peer is closing): another thread may spin now. */
  releaseSpin(): void {
    this.#spinnerObj?.release();
  }

  /**
   * The receive spin of every wait: true when the head moved from `seen`. Only a wait
   * that follows a request of this peer (a send, a post, a query...) spins past
   * SPIN_LOADS: it is likely waiting for an answer. A pure consumer of a stream sleeps
   * and is woken once per coordinator round, leaving both cores to the sender and the
   * coordinator.
   */
  spin(seen: number): boolean {
    const req = this.#link.nextReq;
    const answer = req !== this.#reqAtWait;
    this.#reqAtWait = req;
    const head = this.#link.desc.ctl;
    if (answer) return this.#spinner.spin(head, RING_HEAD, seen);
    this.#spinnerObj?.release();
    return spinWhileEqual(head, RING_HEAD, seen, SPIN_LOADS);
  }

  /**
   * SLICE_RELEASE, called by Message.release(). Releases are gathered into one record of
   * up to RELEASE_BATCH offsets, written when the batch is full, when this thread is
   * about to wait, before any other request, or at the end of the current task
   * (microtask), so that the coordinator sees them promptly without a record each.
   * Once the peer is shut down the batch is dropped at its flush (the coordinator took
   * the whole pool back), so a release need not look at the peer's state.
   */
  releaseSlice(offset: number): void {
    const releases = this.#releases ?? this.#makeReleases();
    const n = releases[1];
    releases[2 + n] = offset;
    releases[1] = n + 1;
    if (n + 1 === RELEASE_BATCH) this.flushReleases();
    else if (!this.#flushQueued) this.#queueFlush();
  }

  /**
   * Queue the end-of-task flush of receipts (the descriptor tail) and releases: one
   * microtask per task for both, scheduled through a resolved promise, which costs a
   * third of queueMicrotask() (no async resource).
   */
  #queueFlush(): void {
    this.#flushQueued = true;
    void RESOLVED.then(this.#flushFn ??= () => {
      this.#flushQueued = false;
      this.flushReleases();
    });
  }

  #makeReleases(): Int32Array {
    return this.#releases = this.#link.scratch.subarray(0, 2 + RELEASE_BATCH);
  }

  flushReleases(): void {
    this.#link.publishTail();
    const releases = this.#releases;
    if (releases === null) return;
    const n = releases[1];
    if (n === 0) return;
    if (this.#link.isOpen()) this.#outbox.writeWords(OP_RELEASE_SLICES, releases, 2 + n);
    releases[1] = 0;
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
