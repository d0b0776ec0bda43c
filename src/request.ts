/*
 * Request+Reply on a one-use reply node (the seed's pattern, built on the primitives).
 *
 * request(to, data): the requester creates a node of its own, sends the request with a
 * handle to that node as the message's last handle (tag TAG_REQUEST), and waits for one
 * message on the node. The server sees msg.isRequest and answers with msg.reply(), which
 * sends to that handle. Whatever ends the wait (reply, timeout, abort, failure), the
 * requester destroys the node: a late or second reply then fails with ESHUTDOWN at the
 * server, and the server's layer releases its handle when the node-destroy reaches it
 * (src/router.ts). So nothing stays charged once both sides have read their
 * notifications, and a dead requester's nodes are destroyed by the coordinator the same way.
 *
 * The reply node of the next request is made while this one is under way (Layer.
 * takeReplyNode), so back-to-back requests do not each block on a createNode round trip;
 * the nodes of answered requests are destroyed in batches (Layer.retireSoon). A request
 * that ends otherwise (timeout, abort, failure) has its node destroyed at once.
 *
 * A reply is an ordinary message to a node of the requester: it is charged to the
 * requester's uid, so a reply flood is bounded by the requester's own limits.
 *
 * Early failure: a node-destroy for the destination (its owner closed, died or destroyed
 * it) fails the request with ESHUTDOWN at once, and so does a node-release of the reply
 * node (the server let go of the reply handle without answering, or is gone).
 */

import { BusError } from './errors.js';
import type { HandleId, Message } from './message.js';
import type { Layer, OwnedRoute, Watcher } from './router.js';
import { TAG_REQUEST } from './values.js';
import { TAG_SHIFT, MAX_HANDLES_PER_MESSAGE } from '../shared/layout.js';
import { abortError, checkMs, checkSignal, timedOut } from './abort.js';

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export interface RequestOptions {
  /** Handles to pass along with the request. */
  handles?: HandleId[];
  /** Milliseconds to wait for the reply (default 30 000); then ETIMEDOUT. */
  timeout?: number;
  /** Abort the wait: the request rejects with an AbortError. */
  signal?: AbortSignal;
}

/** One request waiting for its reply: the route of its reply node. */
class PendingRequest implements OwnedRoute, Watcher {
  #settled = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #onAbort: (() => void) | undefined;

  constructor(
    readonly layer: Layer, readonly node: HandleId, readonly to: HandleId, readonly signal: AbortSignal | undefined,
    readonly resolve: (m: Message) => void, readonly reject: (e: unknown) => void,
  ) {}

  start(timeout: number): void {
    if (timeout !== Infinity) this.#timer = setTimeout(() => this.fail(timedOut('request', timeout)), timeout);
    if (this.signal !== undefined) {
      this.#onAbort = () => this.fail(abortError(this.signal!, 'request'));
      this.signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  onData(msg: Message): void {
    // Answered: the node goes with the next batch (the service's layer refuses a second reply).
    if (this.#settle('soon')) this.resolve(msg);
    else msg.release(); // a reply after we gave up, or a second one: give its charge back
  }

  onReleased(): void {
    this.fail(new BusError('ESHUTDOWN', 'request: the service let go of the request without replying (it released it or is gone)'));
  }

  onShutdown(err: BusError): void {
    if (this.#settle('never')) this.reject(err);
  }

  fail(err: unknown): void {
    if (this.#settle()) this.reject(err);
  }

  /** The first outcome wins; the reply node is destroyed now (a late reply then fails), soon, or never (the peer is gone). */
  #settle(retire: 'now' | 'soon' | 'never' = 'now'): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    clearTimeout(this.#timer);
    if (this.#onAbort !== undefined) this.signal!.removeEventListener('abort', this.#onAbort);
    this.layer.unwatch(this.to, this);
    this.layer.want(-1);
    if (retire === 'now') this.layer.retire(this.node);
    else if (retire === 'soon') this.layer.retireSoon(this.node);
    return true;
  }
}

export async function request(layer: Layer, to: HandleId, data: unknown, opts: RequestOptions = {}): Promise<Message> {
  if (typeof opts !== 'object' || opts === null) throw new BusError('EINVAL', 'request: opts must be an object');
  const timeout = checkMs(opts.timeout ?? DEFAULT_REQUEST_TIMEOUT_MS, 'request', 'opts.timeout');
  const signal = checkSignal(opts.signal, 'request');
  const handles = opts.handles ?? [];
  if (!Array.isArray(handles)) throw new BusError('EINVAL', 'request: opts.handles must be an array of handle ids');
  if (handles.length >= MAX_HANDLES_PER_MESSAGE) {
    throw new BusError('EINVAL', `request: at most ${MAX_HANDLES_PER_MESSAGE - 1} handles (one more carries the reply handle)`);
  }
  if (signal?.aborted) throw abortError(signal, 'request');
  const node = layer.takeReplyNode();
  let pending!: PendingRequest;
  const result = new Promise<Message>((resolve, reject) => {
    pending = new PendingRequest(layer, node, to, signal, resolve, reject);
  });
  layer.owned.set(node, pending);
  layer.watch(to, pending);
  layer.want(1);
  pending.start(timeout);
  try {
    await layer.core.send(to, data, [...handles, node], TAG_REQUEST << TAG_SHIFT);
  } catch (e) {
    pending.fail(e);
  }
  return result;
}
