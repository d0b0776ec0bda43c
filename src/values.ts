/*
 * Values and the layer's tag: what a message says about itself beyond its bytes.
 *
 * Every send carries an 8-bit tag in the top bits of its flags word; the coordinator
 * copies it unread into the receiver's descriptor (shared/layout.ts TAG_SHIFT). The tag
 * holds the value kind (how msg.value() reads the payload) and the layer's roles: a
 * request or a subscription carries its reply or subscription handle as its last handle.
 *
 * Invariants:
 *   - bytes and strings are never copied on their way in: a Uint8Array is written straight
 *     into the OUT ring, a string is UTF-8-encoded there, and value() on the receiving side
 *     returns the pool view (bytes) or decodes it once (string);
 *   - anything else goes through node:v8 serialize (structured clone's wire format), and
 *     value() deserializes it; a value v8 cannot serialize is EINVAL before anything is sent;
 *   - a tag is untrusted input (any peer can set any bits): the receiver acts on a role bit
 *     only when the message really carries the handle it implies.
 */

import { serialize, deserialize } from 'node:v8';
import { BusError } from './errors.js';

/** Value kinds (tag bits 0-1). */
export const VALUE_BYTES = 0;
export const VALUE_STRING = 1;
export const VALUE_V8 = 2;
export const VALUE_KIND_MASK = 3;

/** Roles (tag bits 2-5). */
export const TAG_REQUEST = 4;    // the last handle is a one-use reply handle
export const TAG_SUBSCRIBE = 8;  // the last handle is the subscriber's subscription node
export const TAG_REPLY = 16;
export const TAG_EVENT = 32;
/** Roles whose message carries its extra handle last. */
export const TAG_CARRIES_HANDLE = TAG_REQUEST | TAG_SUBSCRIBE;

export type ValueKind = 'bytes' | 'string' | 'value';

/** What a value becomes on the wire: the bytes or string to write, and its kind. */
export interface Encoded {
  data: Uint8Array | string;
  kind: number;
}

const scratch: Encoded = { data: '', kind: 0 };

/**
 * Sort `data` into bytes, string or a serialized value. Returns a shared scratch object
 * (read it before the next call): the send path allocates nothing for bytes and strings.
 */
export function encodeValue(data: unknown, what: string): Encoded {
  if (typeof data === 'string') {
    scratch.data = data;
    scratch.kind = VALUE_STRING;
  } else if (data instanceof Uint8Array) {
    scratch.data = data;
    scratch.kind = VALUE_BYTES;
  } else {
    let bytes: Uint8Array;
    try {
      bytes = serialize(data);
    } catch (e) {
      throw new BusError('EINVAL', `${what}: data must be a Uint8Array, a string or a structured-cloneable value (${(e as Error).message})`);
    }
    scratch.data = bytes;
    scratch.kind = VALUE_V8;
  }
  return scratch;
}

/** The sent value back from a received payload of kind `kind`. */
export function decodeValue(kind: number, data: Uint8Array, text: () => string): unknown {
  switch (kind) {
    case VALUE_STRING:
      return text();
    case VALUE_V8:
      try {
        return deserialize(data);
      } catch (e) {
        throw new BusError('EINVAL', `message.value(): the payload is not a valid serialized value (${(e as Error).message})`);
      }
    default:
      return data;
  }
}

export function kindName(kind: number): ValueKind {
  return kind === VALUE_STRING ? 'string' : kind === VALUE_V8 ? 'value' : 'bytes';
}
