/*
 * The coordinator's counters behind bus.stats() (src/stats.ts has their meaning). One
 * Counters object per peer and per user, bumped where the work happens: a delivery (in
 * Transactions.deliver), a receipt (PeerState.syncConsumed), a refusal (dispatch). Nothing
 * is computed by scanning queues: queued and pending come straight from the ledgers'
 * own totals. A user's counters outlive its peers, like its ledger. Coordinator thread only;
 * bumping allocates nothing.
 */

import { ERROR_CODES } from '../errors.js';
import { MESSAGES } from './ledger.js';
import type { Ledger } from './ledger.js';
import type { BusStats, PeerStats, UidStats } from '../stats.js';

/** What counting needs of a peer (structural, so that this module imports neither peers nor users). */
interface CountedPeer {
  readonly id: number;
  readonly uid: number;
  readonly stats: Counters;
  readonly ledger: Ledger;
  readonly user: { readonly stats: Counters };
}

interface CountedUser {
  readonly uid: number;
  readonly stats: Counters;
  readonly ledger: Ledger;
}

/** The refusals of a peer or user that has had none: shared by all of them, never written. */
const NO_REFUSALS = new Float64Array(ERROR_CODES.length + 1);

export class Counters {
  sent = 0;
  received = 0;
  bytesSent = 0;
  bytesReceived = 0;
  /** By wire code (index = code number); an array of its own from the first refusal (countRefused). */
  refused = NO_REFUSALS;
}

function bumpRefused(c: Counters, code: number): void {
  if (c.refused === NO_REFUSALS) c.refused = new Float64Array(NO_REFUSALS.length);
  c.refused[code]++;
}

/** A delivery of `bytes` (as charged) from `sender`. */
export function countSent(sender: CountedPeer, bytes: number): void {
  const p = sender.stats, u = sender.user.stats;
  p.sent++;
  p.bytesSent += bytes;
  u.sent++;
  u.bytesSent += bytes;
}

export function countReceived(peer: CountedPeer, messages: number, bytes: number): void {
  const p = peer.stats, u = peer.user.stats;
  p.received += messages;
  p.bytesReceived += bytes;
  u.received += messages;
  u.bytesReceived += bytes;
}

export function countRefused(sender: CountedPeer, code: number): void {
  bumpRefused(sender.stats, code);
  bumpRefused(sender.user.stats, code);
}

/** Messages charged in flight, and received but not released, by one ledger's totals. */
function queuedOf(l: Ledger): number {
  return l.inflight[MESSAGES];
}

function pendingOf(l: Ledger): number {
  return l.max[MESSAGES] - l.remaining[MESSAGES] - l.inflight[MESSAGES];
}

export function collectStats<P extends CountedPeer>(
  users: Iterable<CountedUser>, peers: readonly P[], seq: number, names: ReadonlyMap<number, string>,
  waiting: (p: P) => number,
): BusStats {
  const byUid: Record<number, UidStats> = {};
  for (const u of users) {
    const c = u.stats;
    // Every code, zeros included, so that a reader can use refused.EDQUOT without a default.
    const refused = {} as UidStats['refused'];
    for (let i = 1; i < c.refused.length; i++) refused[ERROR_CODES[i - 1]] = c.refused[i];
    byUid[u.uid] = {
      sent: c.sent, received: c.received, bytesSent: c.bytesSent, bytesReceived: c.bytesReceived, refused,
      queued: queuedOf(u.ledger),
    };
  }
  const byPeer: PeerStats[] = peers.map((p) => {
    const s: PeerStats = {
      peerId: p.id, uid: p.uid, sent: p.stats.sent, received: p.stats.received,
      queued: queuedOf(p.ledger), pending: pendingOf(p.ledger), waiting: waiting(p),
    };
    const name = names.get(p.id);
    if (name !== undefined) s.name = name;
    return s;
  });
  return { peers: peers.length, seq, byUid, byPeer };
}
