/*
 * The everyday layer's receive side, one per Peer: it takes the messages and
 * notifications that belong to the layer out of the peer's stream before the user sees
 * them, and keeps reading while the layer waits for something (a reply, an event) and the
 * user is not calling recv().
 *
 * What the layer owns or holds, by handle id:
 *   - `owned`: nodes this peer created for the layer (a request's one-use reply node, a
 *     subscription's node). Data to them goes to their route; node-release means the other
 *     side let go. retire() destroys one and releases the owner's handle right behind the
 *     destruction; the node-destroy that still comes to us then ends the route.
 *   - `held`: foreign handles the layer holds for the user (a request's reply handle, a
 *     subscription handle at the publisher). They are never shown in msg.handles. Each is
 *     released when its node-destroy arrives (every holder gets one, so this happens once
 *     and no notification about a layer handle reaches the user), or when the layer lets
 *     it go first (a topic dropping a subscription).
 *   - `watched`: destinations of pending requests. Their node-destroy fails those requests
 *     with ESHUTDOWN at once; it is still shown to the user (it is the user's handle).
 *
 * Invariants:
 *   - a message the pump reads but does not route goes to `stash`, and tryRecv() returns
 *     the stash first: the user sees every other message, in order, exactly once;
 *   - the pump runs only while `wanted` > 0 (pending requests, waiting iterators, layer
 *     nodes whose node-destroy is still due), and stops within one wait when it drops to 0;
 *   - after routing a message the pump lets the current microtasks run before it spins or
 *     sleeps: the waiter it woke (an iterator, a request) usually wants the next message
 *     at once, and then finds the pump still running, so a stream of events or replies
 *     costs one wake-up per message, as for recv(), not a sleep, a self-wake and a restart;
 *   - at most one spare reply node exists, made ahead of the next request without
 *     blocking; answered requests' reply nodes are destroyed RETIRE_BATCH at a time; both
 *     go once the layer idles for IDLE_MS (until then each holds a handle of the uid);
 *   - when the peer shuts down, every route is failed or ended and every table emptied.
 */

import { BusError } from './errors.js';
import type { HandleId, Message, MessageLayer } from './message.js';
import type { SendReport } from './peer/types.js';
import { TAG_REPLY } from './values.js';
import { TAG_SHIFT } from '../shared/layout.js';

/** What the layer uses of its Peer's public side (an interface, so that this module need not import Peer). */
export interface LayerPeer {
  readonly isOpen: boolean;
  createNode(): HandleId;
  destroyNodes(nodes: HandleId[]): Promise<void>;
}

/** What the layer may do with its peer's internals (given by Peer, nothing else reaches them). */
export interface PeerCore {
  /** A send with raw flags (layer tag, partial, wait). */
  send(to: HandleId | HandleId[], data: unknown, handles: HandleId[] | undefined, flags: number): Promise<void | SendReport>;
  /** The next message from the ring that route() did not take, or undefined. */
  recvRing(): Message | undefined;
  /** The descriptor ring's head word, read before looking, for sleepHead(). */
  headWord(): number;
  /** One bounded sleep until the head moves from `seen`. */
  sleepHead(seen: number): Promise<void>;
  /** Wake whatever sleeps on the head (the pump, when it has nothing left to wait for). */
  wakeHead(): void;
  /** The IN control words (CTL_WAKE wakes waiting sends). */
  wakeWord(): Int32Array;
  isOpen(): boolean;
  /** createNode() without blocking: resolves with the new node's handle id. */
  createNodeLater(): Promise<HandleId>;
  /** HANDLE_RELEASE without waiting for the answer (ordered after every earlier request). */
  releaseLater(h: HandleId): void;
  /** Write an OP_WAIT record (src/waiting.ts). */
  writeWait(uid: number, flags: number): void;
}

/** A layer node this peer owns (reply node, subscription node). */
export interface OwnedRoute {
  /** A data message to the node; the route owns it now (release it or pass it on). */
  onData(msg: Message): void;
  /** Nobody but us holds the node any more: the other side let go or is gone. */
  onReleased(): void;
  /** The peer shut down. */
  onShutdown(err: BusError): void;
}

/** A pending request watching its destination. */
export interface Watcher {
  fail(err: BusError): void;
}

/** A foreign handle the layer holds: a request's reply handle, or a subscription handle. */
export class HeldHandle {
  /** Request: a reply() is in flight or done. */
  replying = false;
  /** Subscription: the topic that adopted it (null: offered, not added yet, or dropped). */
  topic: { dropHandle(h: HeldHandle): void } | null = null;
  /** Subscription: found gone by a publish; only its node-destroy is still due. */
  dead = false;
  constructor(readonly handle: HandleId, readonly uid: number, readonly isRequest: boolean) {}
}

/** How long the layer idles before batched retirements and an unused spare reply node go. */
export const IDLE_MS = 50;
/** Answered requests whose reply nodes are destroyed in one transaction. */
export const RETIRE_BATCH = 32;

/** Resolves once the current task's microtasks have run (setImmediate). */
function afterMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The route of a spare reply node being retired: its node-destroy ends it, nothing else comes. */
const RETIRED: OwnedRoute = {
  onData: (msg) => msg.release(),
  onReleased: () => undefined,
  onShutdown: () => undefined,
};

export class Layer implements MessageLayer {
  readonly peer: LayerPeer;
  readonly core: PeerCore;
  readonly owned = new Map<HandleId, OwnedRoute>();
  readonly held = new Map<HandleId, HeldHandle>();
  readonly #watched = new Map<HandleId, Set<Watcher>>();
  /** A reply node made ahead of the next request (0: none), and whether one is being made. */
  #spare: HandleId = 0;
  #spareComing = false;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Answered requests' reply nodes, retired together (retireSoon). */
  #toRetire: HandleId[] = [];
  #stash: Message[] = [];
  #stashHead = 0;
  #wanted = 0;
  #pumping = false;
  /** Messages handed to a route (which may wake a waiter): the pump yields after any. */
  #woke = 0;
  /** The pump is in sleepHead() (only then does it need a wake when nothing is wanted any more). */
  #sleeping = false;

  constructor(peer: LayerPeer, core: PeerCore) {
    this.peer = peer;
    this.core = core;
  }

  // ---- the stream ----------------------------------------------------------------------

  unstash(): Message | undefined {
    if (this.#stashHead === this.#stash.length) return undefined;
    const m = this.#stash[this.#stashHead];
    this.#stash[this.#stashHead++] = undefined as never;
    if (this.#stashHead === this.#stash.length) {
      this.#stash.length = 0;
      this.#stashHead = 0;
    }
    return m;
  }

  /** Called by the peer for every message it reads; true when the layer took it. */
  route(msg: Message): boolean {
    const dest = msg.destination;
    switch (msg.type) {
      case 'data': {
        // A peer that never used request() or subscribe() owns no layer node: no lookup per message.
        const r = this.owned.size === 0 ? undefined : this.owned.get(dest);
        if (r !== undefined) {
          this.#woke++;
          r.onData(msg);
          return true;
        }
        const h = msg.layerHandle;
        if (h !== 0 && !this.held.has(h)) this.held.set(h, new HeldHandle(h, msg.senderUid, msg.isRequest));
        return false;
      }
      case 'node-destroy': {
        const w = this.#watched.get(dest);
        if (w !== undefined) {
          this.#watched.delete(dest);
          const err = new BusError('ESHUTDOWN', `request: the node behind handle ${dest} was destroyed or its owner is gone`);
          for (const x of w) x.fail(err);
        }
        const held = this.held.get(dest);
        if (held !== undefined) {
          this.held.delete(dest);
          held.topic?.dropHandle(held);
          this.#release(dest);
          return true;
        }
        if (this.owned.delete(dest)) {
          // retire() released our handle already, right behind the destruction; this ends its wait.
          this.want(-1);
          return true;
        }
        return false;
      }
      case 'node-release': {
        const r = this.owned.get(dest);
        if (r === undefined) return false;
        this.#woke++;
        r.onReleased();
        return true;
      }
    }
  }

  #release(h: HandleId): void {
    if (this.peer.isOpen) this.core.releaseLater(h); // else the coordinator took every handle back already
  }

  // ---- what routes ask of the layer ------------------------------------------------------

  /** Keep reading while `delta` more things wait (negative: fewer). */
  want(delta: number): void {
    // Never below 0: after a shutdown reset, late decrements (an iterator's finally) are moot.
    this.#wanted = Math.max(0, this.#wanted + delta);
    if (this.#wanted > 0 && !this.#pumping) void this.#pump();
    // A pump asleep with nothing left to wait for: let it go now, not at its timeout.
    else if (this.#wanted === 0 && this.#sleeping) this.core.wakeHead();
  }

  watch(to: HandleId, w: Watcher): void {
    let set = this.#watched.get(to);
    if (set === undefined) this.#watched.set(to, set = new Set());
    set.add(w);
  }

  unwatch(to: HandleId, w: Watcher): void {
    const set = this.#watched.get(to);
    if (set === undefined) return;
    set.delete(w);
    if (set.size === 0) this.#watched.delete(to);
  }

  /**
   * Destroy layer nodes in one transaction (their routes stay until the node-destroys
   * arrive, so that a late message to one is released, not shown). The pump keeps
   * running until then.
   */
  retire(...nodes: HandleId[]): void {
    if (nodes.length === 0) return;
    this.want(nodes.length);
    this.peer.destroyNodes(nodes).catch(() => {
      // Shut down: the coordinator destroyed them anyway; no notification will come.
      for (const n of nodes) if (this.owned.delete(n)) this.want(-1);
    });
    // Processed after the destruction, so the owner's handle may go (no EBUSY), and no
    // blocking round trip: the node-destroy that follows only ends the route.
    for (const n of nodes) this.#release(n);
  }

  /**
   * Retire a node whose job is done (an answered request's reply node) with the next
   * batch: one destruction per RETIRE_BATCH requests, or once the layer idles for
   * IDLE_MS, instead of two notifications (and wake-ups) per request. Until then the
   * node holds a handle at each side; its route releases anything still sent to it.
   */
  retireSoon(node: HandleId): void {
    this.#toRetire.push(node);
    if (this.#toRetire.length >= RETIRE_BATCH) this.#flushRetired();
    else this.#armIdle();
  }

  #flushRetired(): void {
    const nodes = this.#toRetire;
    this.#toRetire = [];
    if (this.peer.isOpen) this.retire(...nodes);
  }

  /**
   * A node for a request's reply. The next one is made while this request is under way
   * (without blocking), so a caller making request after request does not pay a blocking
   * round trip for each. An unused spare is retired once the layer idles for IDLE_MS.
   */
  takeReplyNode(): HandleId {
    let node = this.#spare;
    this.#spare = 0;
    if (node === 0) node = this.peer.createNode();
    if (!this.#spareComing) {
      this.#spareComing = true;
      this.core.createNodeLater().then((id) => {
        this.#spareComing = false;
        this.#spare = id;
        this.#armIdle();
      }, () => {
        this.#spareComing = false; // shut down: nothing to keep
      });
    }
    return node;
  }

  /** (Re)start the idle timer: when it fires, batched retirements and the spare go. */
  #armIdle(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(this.#onIdle, IDLE_MS);
    this.#idleTimer.unref(); // a worker with nothing else to do may exit: the coordinator cleans up
  }

  #onIdle = (): void => {
    this.#flushRetired();
    const node = this.#spare;
    this.#spare = 0;
    if (node === 0 || !this.peer.isOpen) return;
    this.owned.set(node, RETIRED);
    this.retire(node);
  };

  /** Drop a held subscription handle now (the topic let it go): the subscriber sees node-release. */
  dropHeld(h: HeldHandle): void {
    if (this.held.get(h.handle) !== h) return;
    this.held.delete(h.handle);
    this.#release(h.handle);
  }

  // ---- MessageLayer: what messages ask of the layer ----------------------------------------

  async reply(msg: Message, data: unknown, opts?: { handles?: HandleId[] }): Promise<void> {
    const h = this.held.get(msg.layerHandle);
    if (h === undefined || !h.isRequest) {
      throw new BusError('ESHUTDOWN', 'message.reply(): the requester gave up (it timed out, aborted, or is gone)');
    }
    if (h.replying) throw new BusError('EINVAL', 'message.reply(): this request was already answered');
    h.replying = true;
    try {
      await this.core.send(h.handle, data, opts?.handles, TAG_REPLY << TAG_SHIFT);
    } catch (e) {
      if (e instanceof BusError && e.code === 'ESHUTDOWN') {
        throw new BusError('ESHUTDOWN', 'message.reply(): the requester gave up (it timed out, aborted, or is gone)');
      }
      h.replying = false; // refused (EDQUOT...): the reply may be tried again
      throw e;
    }
  }

  /** A subscription offered in a message that is released without topic.add(): let it go. */
  released(msg: Message): void {
    const h = this.held.get(msg.layerHandle);
    if (h !== undefined && !h.isRequest && h.topic === null && !h.dead) this.dropHeld(h);
  }

  // ---- the pump ------------------------------------------------------------------------------

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#wanted > 0) {
        if (!this.peer.isOpen) {
          this.#shutdown();
          return;
        }
        const seen = this.core.headWord();
        const woke = this.#woke;
        let m: Message | undefined;
        let stashed = false;
        while ((m = this.core.recvRing()) !== undefined) {
          this.#stash.push(m);
          stashed = true;
        }
        if (this.#wanted === 0) break;
        if (stashed) continue;
        if (this.#woke !== woke) {
          // A route took a message (an event, a reply): its waiter runs in this task's
          // microtasks and usually wants the next one at once. Let it run before spinning,
          // so that the pump neither spins in its way nor falls asleep and has to be woken
          // when the count dips to 0 for a moment.
          await afterMicrotasks();
          continue;
        }
        this.#sleeping = true;
        try {
          await this.core.sleepHead(seen);
        } finally {
          this.#sleeping = false;
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** The peer is gone: fail or end everything the layer waits for. */
  #shutdown(): void {
    const err = new BusError('ESHUTDOWN', 'the peer is closed or the bus is shut down');
    for (const set of this.#watched.values()) for (const w of set) w.fail(err);
    this.#watched.clear();
    const routes = [...this.owned.values()];
    this.owned.clear();
    for (const r of routes) r.onShutdown(err);
    this.held.clear();
    this.#wanted = 0;
    this.#toRetire = [];
    this.#spare = 0;
    clearTimeout(this.#idleTimer);
  }
}
