/*
 * Subscribe+Event{n}: subscriptions as nodes, events as one partial multicast.
 *
 * subscribe(to, data): the subscriber creates a node of its own and sends `data` to the
 * publisher with a handle to that node as the last handle (tag TAG_SUBSCRIBE). The
 * publisher keeps the handle with topic.add(msg); topic.publish() is one partial multicast
 * to every kept handle, so a subscriber whose uid is over quota misses that event (EDQUOT,
 * reported with its uid) while every other subscriber gets it, and nobody ever waits for
 * a slow subscriber: the quota, not the publisher, holds a slow one back.
 *
 * Endings, each seen by the other side through bus1's own notifications:
 *   - sub.close() destroys the subscription node: the publisher's next publish finds it
 *     gone (ESHUTDOWN), drops it and counts it in `dropped` (or its node-destroy does so
 *     first), and releases its handle when the node-destroy arrives;
 *   - the publisher drops it (topic.close(), a subscribe message released without
 *     topic.add(), or the publisher is gone): the subscriber's node loses its last holder,
 *     the subscriber gets node-release, and its iteration ends after the queued events.
 * Events queued at a closed subscription are released, so their charges go back.
 */

import { BusError } from './errors.js';
import type { HandleId, Message } from './message.js';
import type { SendReport, SendOptions } from './peer/types.js';
import type { HeldHandle, Layer, OwnedRoute } from './router.js';
import { TAG_SUBSCRIBE, TAG_EVENT } from './values.js';
import { TAG_SHIFT, SEND_FLAG_PARTIAL, MAX_DESTINATIONS } from '../shared/layout.js';

/** The subscriber's side: an iterable of events, and close(). */
export class Subscription implements AsyncIterable<Message>, OwnedRoute {
  readonly node: HandleId;
  #layer: Layer;
  #queue: Message[] = [];
  #ended = false;
  #closed = false;
  #wake: (() => void) | null = null;

  constructor(layer: Layer, node: HandleId) {
    this.#layer = layer;
    this.node = node;
  }

  /** True once the publisher dropped the subscription, the publisher is gone, or close() was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Unsubscribe: the publisher learns it at its next publish. Queued events are released. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const wasEnded = this.#ended;
    this.#end();
    for (const m of this.#queue) if (!m.released) m.release();
    this.#queue.length = 0;
    if (!wasEnded) this.#layer.retire(this.node);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    try {
      for (;;) {
        const m = this.#queue.shift();
        if (m !== undefined) {
          yield m;
          continue;
        }
        if (this.#ended) return;
        try {
          // The pump may route events at once, inside want(): the waker must be in place first.
          await new Promise<void>((resolve) => {
            this.#wake = resolve;
            this.#layer.want(1);
          });
        } finally {
          this.#layer.want(-1);
        }
      }
    } finally {
      // A `break` out of for-await unsubscribes, like closing any other iterator.
      this.close();
    }
  }

  onData(msg: Message): void {
    if (this.#closed) {
      msg.release();
      return;
    }
    this.#queue.push(msg);
    this.#wakeUp();
  }

  onReleased(): void {
    if (this.#ended) return;
    this.#end();
    this.#layer.retire(this.node);
  }

  onShutdown(): void {
    this.#end();
  }

  #end(): void {
    this.#ended = true;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
}

export async function subscribe(layer: Layer, to: HandleId, data: unknown, opts: SendOptions = {}): Promise<Subscription> {
  if (typeof opts !== 'object' || opts === null) throw new BusError('EINVAL', 'subscribe: opts must be an object');
  const handles = opts.handles ?? [];
  if (!Array.isArray(handles)) throw new BusError('EINVAL', 'subscribe: opts.handles must be an array of handle ids');
  const node = layer.peer.createNode();
  const sub = new Subscription(layer, node);
  layer.owned.set(node, sub);
  try {
    await layer.core.send(to, data ?? '', [...handles, node], TAG_SUBSCRIBE << TAG_SHIFT);
  } catch (e) {
    sub.close();
    throw e;
  }
  return sub;
}

/** What one publish did. */
export interface PublishReport {
  delivered: number;
  /** Subscribers that missed this event, with why (EDQUOT: their uid is over quota). */
  refused: Array<{ uid: number; error: BusError }>;
  /** Subscriptions found gone (closed, or the subscriber died) since the previous publish. */
  dropped: number;
}

/** Every event's send flags: a partial multicast, tagged as an event. */
const EVENT_FLAGS = SEND_FLAG_PARTIAL | (TAG_EVENT << TAG_SHIFT);

/** The publisher's side: the subscriptions it keeps. */
export class Topic {
  #layer: Layer;
  #subs: HeldHandle[] = [];
  /**
   * What publish() sends to, rebuilt only when the subscriptions change (null: to be
   * rebuilt): the handles, and the HeldHandle of each at the same index. Both are
   * replaced, never changed, so a publish in progress keeps the ones it started with.
   */
  #handles: HandleId[] | null = null;
  #sent: HeldHandle[] = [];
  #dropped = 0;
  #closed = false;

  constructor(layer: Layer) {
    this.#layer = layer;
  }

  /** Live subscriptions. */
  get size(): number {
    return this.#subs.length;
  }

  /** Keep the subscription a subscribe message carries (before releasing the message). */
  add(msg: Message): void {
    if (this.#closed) throw new BusError('EINVAL', 'topic.add(): the topic is closed');
    if (!msg.isSubscribe) throw new BusError('EINVAL', 'topic.add(): the message is not a subscription (msg.isSubscribe is false)');
    const h = this.#layer.held.get(msg.layerHandle);
    if (h === undefined || h.isRequest || h.dead) {
      throw new BusError('ESHUTDOWN', 'topic.add(): the subscription is gone (the subscriber closed it, or the message was released first)');
    }
    if (h.topic !== null) throw new BusError('EINVAL', 'topic.add(): the subscription was already added');
    h.topic = this;
    this.#subs.push(h);
    this.#handles = null;
  }

  /**
   * Send one event to every subscription: one partial multicast (per MAX_DESTINATIONS
   * subscribers). Per publish this allocates only the report and its `refused` array:
   * the destination list is kept while the subscriptions stay the same.
   */
  async publish(data: unknown, opts?: { handles?: HandleId[] }): Promise<PublishReport> {
    if (this.#closed) throw new BusError('EINVAL', 'topic.publish(): the topic is closed');
    if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw new BusError('EINVAL', 'topic.publish(): opts must be an object');
    const report: PublishReport = { delivered: 0, refused: [], dropped: 0 };
    let all = this.#handles;
    if (all === null && this.#subs.length > 0) {
      this.#sent = this.#subs.slice();
      all = this.#handles = this.#sent.map((h) => h.handle);
    }
    if (all !== null) {
      const sent = this.#sent;
      const n = all.length;
      // Every chunk is written before any is awaited: while one is awaited, a subscription's
      // node-destroy may arrive and release its handle, which a later chunk would still name.
      const chunks: Array<Promise<SendReport>> = [];
      for (let at = 0; at < n; at += MAX_DESTINATIONS) {
        const to = n <= MAX_DESTINATIONS ? all : all.slice(at, at + MAX_DESTINATIONS);
        chunks.push(this.#layer.core.send(to, data, opts?.handles, EVENT_FLAGS) as Promise<SendReport>);
      }
      const results = chunks.length === 1 ? [{ status: 'fulfilled' as const, value: await chunks[0]! }] : await Promise.allSettled(chunks);
      for (let c = 0; c < results.length; c++) {
        const res = results[c]!;
        if (res.status === 'rejected') throw res.reason;
        const r = res.value;
        const at = c * MAX_DESTINATIONS;
        report.delivered += r.delivered.length;
        for (const { destination, error } of r.refused) {
          const h = sent[all.indexOf(destination, at)];
          if (error.code === 'ESHUTDOWN') {
            // Gone: its node-destroy is on its way and will release our handle (src/router.ts).
            h.dead = true;
            this.dropHandle(h);
          } else {
            report.refused.push({ uid: h.uid, error });
          }
        }
      }
    }
    report.dropped = this.#dropped;
    this.#dropped = 0;
    return report;
  }

  /** Drop every subscription: each subscriber's iteration ends. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const subs = this.#subs;
    this.#subs = [];
    this.#handles = null;
    this.#sent = [];
    for (const h of subs) {
      h.topic = null;
      if (!h.dead) this.#layer.dropHeld(h);
    }
  }

  /** @internal A subscription is gone (found by a publish, or by its node-destroy). */
  dropHandle(h: HeldHandle): void {
    const i = this.#subs.indexOf(h);
    if (i < 0) return;
    this.#subs.splice(i, 1);
    this.#handles = null;
    h.topic = null;
    this.#dropped++;
  }
}
