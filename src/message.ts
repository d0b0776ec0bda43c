/*
 * A received message or notification (bus1 message.c, receive side).
 *
 * `data` is a view straight into the receiver's pool: no copy was made on receipt. The
 * slice stays the receiver's (and stays charged to its user, bus1 SLICE) until
 * release(); after that the coordinator may reuse the memory, so `data` must not be read
 * again. Notifications carry no slice; release() on them only marks them released.
 */

import { BusError } from './errors.js';

export type HandleId = number;
export type MessageType = 'data' | 'node-destroy' | 'node-release';

/** What a Message needs from its peer; kept off the public shape. */
export interface SliceOwner {
  releaseSlice(offset: number): void;
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

  constructor(
    type: MessageType, destination: HandleId, data: Uint8Array | null, handles: HandleId[] | null,
    senderUid: number, seq: number, cont: boolean, owner: SliceOwner | null, offset: number,
  ) {
    this.type = type;
    this.destination = destination;
    this.data = data ?? EMPTY;
    this.handles = handles ?? (NO_HANDLES as HandleId[]);
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

  /** SLICE_RELEASE: give the pool slice back. A second call fails with ENXIO. */
  release(): void {
    if (this.#released) throw new BusError('ENXIO', 'message.release(): the message was already released');
    this.#released = true;
    const owner = this.#owner;
    this.#owner = null;
    if (owner !== null) owner.releaseSlice(this.#offset);
  }
}
