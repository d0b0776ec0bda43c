/*
 * PostStream: a peer's post() stream between two flush() calls. Peer thread only;
 * module-private (the request pump, src/peer/acks.ts, holds one as `posts`).
 *
 * Posts are a stream: once the coordinator refuses one, it refuses every later post the
 * same way until flush() writes OP_RESUME (src/coordinator/dispatch.ts). So once the pump
 * has seen such a refusal, the outbox refuses the posts behind it here (refuse()), as the
 * coordinator would, and they never cost it a turn. flush() reports both kinds together:
 * the coordinator's refusals first, then these, which all came later (reqId order).
 *
 * Invariants: `lastPost` is the newest post written to the ring (never one refused here,
 * which the coordinator never sees and so never acknowledges); the refusal that arms
 * refuse() is one of a post written after the last OP_RESUME.
 */

import { type BusError, errorFromWire } from '../errors.js';
import { after } from './pending.js';
import type { PostReport } from './types.js';

export class PostStream {
  /** reqId of the newest post written, and whether any post may still be unacknowledged. */
  lastPost = 0;
  inFlight = false;
  /** Refused by the coordinator, and refused here, since the last report. */
  #refused: Array<{ id: number; error: BusError }> = [];
  #refusedHere: Array<{ id: number; error: BusError }> = [];
  /** The first refusal since the last OP_RESUME, as the coordinator gave it (code 0: none). */
  #code = 0;
  #resource = 0;
  #detail = 0;
  #uid = 0;
  /** lastPost when OP_RESUME was written: refusals up to it belong to the window it closed. */
  #resumedAfter = 0;

  written(reqId: number): void {
    this.lastPost = reqId;
    this.inFlight = true;
  }

  /** The coordinator refused post `id` (the pump's settle, with the verdict's fields). */
  refused(id: number, error: BusError, code: number, resource: number, detail: number, uid: number): void {
    this.#refused.push({ id, error });
    if (this.#code === 0 && after(id, this.#resumedAfter)) {
      this.#code = code;
      this.#resource = resource;
      this.#detail = detail;
      this.#uid = uid;
    }
  }

  /** The coordinator has acknowledged every request up to `acked`. */
  acked(acked: number): void {
    if (this.inFlight && !after(this.lastPost, acked)) this.inFlight = false;
  }

  /** Refuse post `reqId` here, as the coordinator would, if a refusal is known: true when refused. */
  refuse(reqId: number): boolean {
    if (this.#code === 0) return false;
    this.#refusedHere.push({ id: reqId, error: quietError('post', this.#code, this.#resource, this.#detail, this.#uid) });
    return true;
  }

  /** flush() wrote OP_RESUME: later posts are the coordinator's to judge again. */
  resume(): void {
    this.#code = 0;
    this.#resumedAfter = this.lastPost;
  }

  /** Posts refused and not yet reported. */
  get rejectedCount(): number {
    return this.#refused.length + this.#refusedHere.length;
  }

  /** The report of a flush(): every post refused since the last one, in reqId order. */
  take(): PostReport {
    const rejected = this.#refusedHere.length === 0 ? this.#refused : this.#refused.concat(this.#refusedHere);
    this.#refused = [];
    this.#refusedHere = [];
    return { rejected };
  }
}

/**
 * errorFromWire without a stack: one captured in the pump would only show the pump, and
 * costs microseconds per error, while a sender far ahead of its receiver can be refused
 * thousands of times.
 */
export function quietError(op: string, code: number, resource: number, detail: number, uid: number): BusError {
  const stackLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const err = errorFromWire(op, code, resource, detail, uid);
  Error.stackTraceLimit = stackLimit;
  return err;
}
