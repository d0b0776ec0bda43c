/*
 * Dispatcher: reading a peer's OUT ring and dispatching its requests (coordinator
 * thread only).
 *
 * Untrusted input: everything read from an OUT ring. A record whose framing is broken
 * disconnects the peer (REASON_PROTOCOL); a well-framed record with bad fields gets an
 * EINVAL verdict. A request starts only when its verdicts are sure to fit; a peer whose
 * verdict ring is full is `stalled` until it reads. Up to BATCH_RECORDS records are
 * taken from one peer before moving on (fairness); the batch's descriptors, verdicts
 * and ack are published together at its end.
 */

import {
  OP_SEND, OP_CREATE_NODE, OP_RELEASE_HANDLE, OP_RELEASE_SLICE, OP_RELEASE_SLICES, OP_DESTROY_NODES, OP_QUERY,
  OP_CLOSE, OP_RESUME, OP_PAD, SEND_FLAG_STREAM, SEND_FLAG_PARTIAL, MAX_DESTINATIONS, CTL_STATE, STATE_CLOSED,
  STATE_DISCONNECTED, REASON_PROTOCOL, REASON_NONE, OP_WAIT, SEND_FLAG_WAIT,
} from '../../shared/layout.js';
import { RING_EMPTY, RING_CORRUPT } from '../../shared/ring.js';
import type { PeerState } from './peer-state.js';
import { countRefused } from './stats.js';
import { E_DQUOT, RUN_UNICAST, type CoordinatorCore } from './core.js';
import type { Verdicts } from './verdicts.js';
import type { Receipts } from './receipts.js';
import type { Handles } from './handles.js';
import type { Transactions } from './transactions.js';
import type { Disconnects } from './disconnect.js';

/** Records processed from one peer before moving to the next, for fairness. */
export const BATCH_RECORDS = 256;

const enum Dispatch { Done, Retry, Violation }

export class Dispatcher {
  constructor(
    readonly core: CoordinatorCore, readonly receipts: Receipts, readonly verdicts: Verdicts,
    readonly tx: Transactions, readonly handles: Handles, readonly disc: Disconnects,
  ) {}

  processPeer(peer: PeerState): number {
    const core = this.core;
    peer.stalled = false;
    let n = 0;
    const out = peer.out;
    while (n < BATCH_RECORDS) {
      const off = out.read();
      if (off === RING_EMPTY) break;
      if (off === RING_CORRUPT) {
        this.disc.disconnect(peer, STATE_DISCONNECTED, REASON_PROTOCOL);
        return n;
      }
      // One more send of the open run of unicasts skips the general dispatch (Transactions.continueUnicastRun).
      if (core.runOpen && core.runKind === RUN_UNICAST && out.op === OP_SEND && this.tx.continueUnicastRun(peer, off >> 2, out.bodyBytes)) {
        out.consume();
        n++;
        continue;
      }
      const r = this.dispatch(peer, out.op, off, out.bodyBytes);
      if (r === Dispatch.Retry) break;
      out.consume();
      n++;
      if (r === Dispatch.Violation) {
        this.disc.disconnect(peer, STATE_DISCONNECTED, REASON_PROTOCOL);
        return n;
      }
      if (!peer.open) return n;
    }
    core.flushRun();
    if (n > 0) {
      // A producer waiting for space is woken once half the ring is free: waking it for a
      // few bytes would cost a futex call per batch.
      if (out.release() && out.used() <= out.capacity / 2) out.wakeProducer();
      core.markDirty(peer);
      core.publishDirty();
    }
    return n;
  }

  dispatch(peer: PeerState, op: number, off: number, len: number): Dispatch {
    const core = this.core;
    const i32 = peer.out.i32;
    const w = off >> 2;
    // Ring padding (shared/ring.ts): nothing to do, whatever it holds.
    if (op === OP_PAD) return Dispatch.Done;
    if (len < 4) return Dispatch.Violation;
    const reqId = i32[w] >>> 0;
    // Receipts first: a handle that arrived in a message this peer has since received is
    // usable by its next request, and a slice it received may be released. The peer
    // publishes its tail before writing such a request, so one look here is enough.
    if (core.runOpen && (op !== OP_SEND || core.inRun(peer))) core.flushRun();
    if (!peer.syncConsumed()) return Dispatch.Violation;
    // A request may only start when its verdicts are sure to fit (one per refused
    // destination of a partial multicast, else one).
    let need = 1;
    if (op === OP_SEND && len >= 12 && (i32[w + 1] & SEND_FLAG_PARTIAL) !== 0) {
      need = Math.min(i32[w + 2] >>> 0, MAX_DESTINATIONS) + 1;
    }
    if (peer.verdictFree < need) {
      // The peer writes the verdict tail: validate it like the descriptor tail.
      const free = peer.verdicts.free();
      if (free < 0 || free > peer.verdicts.slots) return Dispatch.Violation;
      peer.verdictFree = free;
      if (free < need) {
        peer.stalled = true;
        return Dispatch.Retry;
      }
    }
    let code = 0;
    switch (op) {
      case OP_SEND: {
        const stream = len >= 8 && (i32[w + 1] & SEND_FLAG_STREAM) !== 0;
        if (stream && peer.streamCode !== 0) {
          // Behind a refused post: refused the same way, so that order is kept.
          code = core.fail(peer.streamCode, peer.streamDetail, peer.streamResource, peer.streamUid);
          countRefused(peer, code);
          break;
        }
        code = this.tx.send(peer, w, len);
        if (code !== 0) countRefused(peer, code);
        if ((i32[w + 1] & SEND_FLAG_WAIT) !== 0) {
          if (code === E_DQUOT) core.waiters.refused(peer, core.errUid);
          else if (code === 0) core.waiters.passed(peer);
        }
        if (code !== 0 && stream) {
          peer.streamCode = code;
          peer.streamDetail = core.errDetail;
          peer.streamResource = core.errResource;
          peer.streamUid = core.errUid;
        }
        break;
      }
      case OP_RESUME:
        peer.streamCode = 0;
        break;
      case OP_WAIT:
        if (len < 12) return Dispatch.Violation;
        core.waiters.wait(peer, i32[w + 1] >>> 0, i32[w + 2]);
        break;
      case OP_CREATE_NODE:
        code = this.handles.createNode(peer);
        if (code === 0) {
          this.verdicts.writeVerdict(peer, reqId, 0, 0, core.errDetail, 0);
          this.verdicts.ack(peer, reqId);
          return Dispatch.Done;
        }
        break;
      case OP_RELEASE_HANDLE:
        if (len < 8) return Dispatch.Violation;
        code = this.handles.releaseHandle(peer, i32[w + 1] >>> 0);
        break;
      case OP_RELEASE_SLICE:
        if (len < 8) return Dispatch.Violation;
        if (!this.receipts.releaseSlice(peer, i32[w + 1] >>> 0)) return Dispatch.Violation;
        break;
      case OP_RELEASE_SLICES: {
        if (len < 8) return Dispatch.Violation;
        const n = i32[w + 1] >>> 0;
        if (n > (len - 8) / 4) return Dispatch.Violation;
        // One ledger update for the whole batch.
        let count = 0, bytes = 0, ok = true;
        for (let i = 0; i < n; i++) {
          const b = this.receipts.freeSlice(peer, i32[w + 2 + i] >>> 0);
          if (b < 0) {
            ok = false;
            break;
          }
          count++;
          bytes += b;
        }
        if (count > 0) {
          peer.user.ledger.release(count, 0, bytes);
          peer.ledger.release(count, 0, bytes);
        }
        if (!ok) return Dispatch.Violation;
        break;
      }
      case OP_DESTROY_NODES: {
        if (len < 8) return Dispatch.Violation;
        const n = i32[w + 1] >>> 0;
        if (n > (len - 8) / 4) return Dispatch.Violation;
        code = this.handles.destroyNodesRequest(peer, w + 2, n);
        break;
      }
      case OP_QUERY:
        this.verdicts.writeQueryVerdict(peer, reqId);
        this.verdicts.ack(peer, reqId);
        return Dispatch.Done;
      case OP_CLOSE:
        // Closed before the ack is seen, so that close() resolving means closed.
        Atomics.store(peer.ctl, CTL_STATE, STATE_CLOSED);
        this.verdicts.ack(peer, reqId);
        core.publishDirty();
        this.disc.disconnect(peer, STATE_CLOSED, REASON_NONE);
        return Dispatch.Done;
      default:
        return Dispatch.Violation;
    }
    if (code !== 0) this.verdicts.writeVerdict(peer, reqId, code, core.errResource, core.errDetail, core.errUid);
    this.verdicts.ack(peer, reqId);
    return Dispatch.Done;
  }
}
