/*
 * The shape of bus.stats(): counters the coordinator keeps as it works (see
 * src/coordinator/stats.ts), read by the owner over the control port.
 *
 * Meanings:
 *   sent / bytesSent          messages (one per destination) and bytes this uid or peer
 *                             got committed, bytes as charged: payload plus 4 per handle,
 *                             rounded up to 8
 *   received / bytesReceived  the same, counted when the receiver took them off its ring
 *   refused                   sends refused, by error code (a partial multicast counts
 *                             each refused destination)
 *   queued                    messages charged to the receiver and not yet received
 *   pending                   messages received and not yet released (pool slices held)
 *   waiting                   sends of this peer waiting their turn on EDQUOT (wait: ...)
 */

import type { BusErrorCode } from './errors.js';

export interface UidStats {
  sent: number;
  received: number;
  bytesSent: number;
  bytesReceived: number;
  /** Every code, zero when none. */
  refused: Record<BusErrorCode, number>;
  queued: number;
}

export interface PeerStats {
  peerId: number;
  uid: number;
  name?: string;
  sent: number;
  received: number;
  queued: number;
  pending: number;
  waiting: number;
}

export interface BusStats {
  /** Peers connected now. */
  peers: number;
  /** The last global sequence number given out. */
  seq: number;
  byUid: Record<number, UidStats>;
  byPeer: PeerStats[];
}
