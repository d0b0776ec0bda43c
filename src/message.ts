/*
 * A received message or notification (bus1 message.c, receive side).
 *
 * `data` is a view straight into the receiver's pool: no copy was made on receipt. The
 * slice stays the receiver's (and stays charged to its user, bus1 SLICE) until
 * release(); after that the coordinator may reuse the memory, so `data` must not be read
 * again (a later message in the same slot may even get the same view object:
 * src/peer/pool-map.ts). Notifications carry no slice; release() on them only marks
 * them released.
 */

import { BusError } from './errors.js';
import {
  decodeValue, kindName, VALUE_KIND_MASK, TAG_REQUEST, TAG_SUBSCRIBE, TAG_CARRIES_HANDLE, type ValueKind,
} from './values.js';

export type HandleId = number;
export type MessageType = 'data' | 'node-destroy' | 'node-release';

/** What a Message needs from its peer; kept off the public shape. */
export interface SliceOwner {
  releaseSlice(offset: number): void;
}

/** What a request or subscription message needs from the peer's layer (src/router.ts). */
export interface MessageLayer {
  reply(msg: Message, data: unknown, opts?: { handles?: HandleId[] }): Promise<void>;
  released(msg: Message): void;
}

const EMPTY = new Uint8Array(0);
const NO_HANDLES: readonly HandleId[] = Object.freeze([]);
const decoder = new TextDecoder();

export class Message {
  readonly type: MessageType;
  readonly destination: HandleId;
  readonly data: Uint8Array;
  readonly handles: HandleId[];
  readonly senderUid: number;
  readonly seq: number;
  readonly continue: boolean;
  #owner: SliceOwner | null;
  #offset: number;
  #released = false;
  #tag: number;
  /** The reply or subscription handle a request or subscription carries as its last handle (0: none). */
  #extra: HandleId = 0;
  #layer: MessageLayer | null;

  constructor(
    type: MessageType, destination: HandleId, data: Uint8Array | null, handles: HandleId[] | null,
    senderUid: number, seq: number, cont: boolean, owner: SliceOwner | null, offset: number,
    tag = 0, layer: MessageLayer | null = null,
  ) {
    this.type = type;
    this.destination = destination;
    this.data = data ?? EMPTY;
    const role = tag & TAG_CARRIES_HANDLE;
    // Exactly one role, and the handle it implies: a tag is only a sender's claim.
    if (handles !== null && handles.length > 0 && (role === TAG_REQUEST || role === TAG_SUBSCRIBE)) {
      this.#extra = handles.pop()!;
    } else {
      tag &= ~TAG_CARRIES_HANDLE;
    }
    this.#tag = tag;
    this.#layer = layer;
    this.handles = handles !== null && handles.length > 0 ? handles : (NO_HANDLES as HandleId[]);
    this.senderUid = senderUid;
    this.seq = seq;
    this.continue = cont;
    this.#owner = owner;
    this.#offset = offset;
  }

  /** The payload decoded as UTF-8 (a new string, safe to keep after release()). */
  text(): string {
    if (this.#released) throw new BusError('ENXIO', 'message.text(): the message was already released');
    return this.data.length === 0 ? '' : decoder.decode(this.data);
  }

  get released(): boolean {
    return this.#released;
  }

  /** How the sender gave `data`: bytes, a string, or a structured-clone value. */
  get kind(): ValueKind {
    return kindName(this.#tag & VALUE_KIND_MASK);
  }

  /** What was sent: the Uint8Array (a view, no copy), the string, or the deserialized value. */
  value(): unknown {
    if (this.#released) throw new BusError('ENXIO', 'message.value(): the message was already released');
    return decodeValue(this.#tag & VALUE_KIND_MASK, this.data, () => this.text());
  }

  /** True on a message sent with peer.request(): answer it once with reply(). */
  get isRequest(): boolean {
    return (this.#tag & TAG_REQUEST) !== 0;
  }

  /** True on a message sent with peer.subscribe(): keep it with topic.add(). */
  get isSubscribe(): boolean {
    return (this.#tag & TAG_SUBSCRIBE) !== 0;
  }

  /** @internal The reply or subscription handle this message carries (0: none). */
  get layerHandle(): HandleId {
    return this.#extra;
  }

  /** Answer a request, once (a second reply is EINVAL). The reply is charged to the requester's uid. */
  reply(data: unknown, opts?: { handles?: HandleId[] }): Promise<void> {
    if (!this.isRequest || this.#layer === null) {
      return Promise.reject(new BusError('EINVAL', 'message.reply(): this message is not a request'));
    }
    return this.#layer.reply(this, data, opts);
  }

  /** SLICE_RELEASE: give the pool slice back. A second call fails with ENXIO. */
  release(): void {
    if (this.#released) throw new BusError('ENXIO', 'message.release(): the message was already released');
    this.#released = true;
    if (this.#extra !== 0) this.#layer?.released(this);
    const owner = this.#owner;
    this.#owner = null;
    if (owner !== null) owner.releaseSlice(this.#offset);
  }
}
