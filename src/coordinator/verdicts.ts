/*
 * Verdicts: the coordinator's answers to a peer's requests (coordinator thread only).
 *
 * A verdict record is written only for a failure or a request that returns values;
 * every processed request with a reqId then moves the peer's ack (published to
 * CTL_ACKED with the batch). The caller has checked that the verdict ring has room
 * (Dispatcher.dispatch reserves `need` slots before a request starts): verdictFree
 * counts the slots known free, so a full ring here is an internal error.
 */

import { V_REQ, V_CODE, V_RESOURCE, V_DETAIL, V_VALUES_F64 } from '../../shared/layout.js';
import type { PeerState } from './peer-state.js';
import type { CoordinatorCore } from './core.js';

export class Verdicts {
  constructor(readonly core: CoordinatorCore) {}

  /** Reserve and fill a verdict slot's words; the caller checked there is room. Returns the slot's Int32 index. */
  verdictSlot(peer: PeerState, reqId: number, code: number, resource: number, detail: number): number {
    peer.verdictFree--;
    const v = peer.verdicts;
    const at = v.reserve();
    if (at < 0) throw new Error('internal: verdict ring full although space was checked');
    v.i32[at + V_REQ] = reqId;
    v.i32[at + V_CODE] = code;
    v.i32[at + V_RESOURCE] = resource;
    v.i32[at + V_DETAIL] = detail;
    peer.verdictDirty = true;
    this.core.markDirty(peer);
    return at;
  }

  writeVerdict(peer: PeerState, reqId: number, code: number, resource: number, detail: number, uid: number): void {
    if (reqId === 0) return;
    const at = this.verdictSlot(peer, reqId, code, resource, detail);
    peer.verdicts.f64[(at >> 1) + V_VALUES_F64] = uid;
  }

  /** A query's answer: the peer's limits, then what remains of them. */
  writeQueryVerdict(peer: PeerState, reqId: number): void {
    if (reqId === 0) return;
    const at = this.verdictSlot(peer, reqId, 0, 0, 0);
    const f64 = peer.verdicts.f64;
    const f = (at >> 1) + V_VALUES_F64;
    for (let r = 0; r < 3; r++) {
      f64[f + r] = peer.ledger.max[r];
      f64[f + 3 + r] = peer.ledger.remaining[r];
    }
  }

  ack(peer: PeerState, reqId: number): void {
    if (reqId === 0) return;
    peer.acked = reqId;
    peer.ackDirty = true;
    this.core.markDirty(peer);
  }
}
