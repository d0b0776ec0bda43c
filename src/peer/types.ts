/*
 * The option and result types of Peer's public methods (re-exported by src/peer.ts and
 * src/index.ts). Types only: they live apart from Peer so that the everyday layer
 * (router, topic, waiting) can name them without importing Peer, which imports it.
 */

import type { BusError } from '../errors.js';
import type { HandleId } from '../message.js';
import type { Limits } from '../coordinator/ledger.js';

export interface WaitOptions {
  /** On EDQUOT, wait until the receiver gives enough back: true (no deadline) or at most this many ms. */
  wait?: boolean | number;
  /** Abort a waiting send (AbortError). */
  signal?: AbortSignal;
}

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
