/*
 * What `threadbus bench` runs: the patterns, the role of every peer (one worker thread
 * each), its uid, whom it sends to and how fast, and the shared control block through
 * which the main thread stops the run and reads every peer's counters.
 *
 * Invariants: receiving roles (receiver, server) run as SERVICE_UID and sending roles as
 * uids 1..uids, so every send crosses uids and the quota rule (a sending uid may hold at
 * most its share of what the receiving uid has left) is what limits a greedy sender.
 * Counters are written only by their own peer's thread and read by the main thread.
 */

export const PATTERNS = ['unicast', 'reqrep', 'pubsub', 'fanin', 'pairs', 'multicast'] as const;
export type Pattern = (typeof PATTERNS)[number];

export const PATTERN_HELP: Record<Pattern, string> = {
  unicast: 'half the peers send, half receive; each sender spreads its messages over every receiver in turn',
  pairs: 'peers form sender -> receiver pairs; each sender talks to its own receiver only',
  fanin: 'every peer but one sends to the last one',
  multicast: 'one sender; each message goes to all other peers at once (all or nothing)',
  pubsub: 'one publisher; each message goes to every subscriber that has room ({ partial: true } multicast)',
  reqrep: 'every peer but one is a client with one request in flight; the last one serves, replying to the handle each request carries',
};

/** The uid of every receiving peer: the service the senders share. */
export const SERVICE_UID = 0;

export type Role = 'sender' | 'receiver' | 'client' | 'server';

export interface PeerPlan {
  readonly index: number;
  readonly role: Role;
  readonly uid: number;
  /** Peer indices this peer sends to (senders, clients). */
  readonly dests: readonly number[];
  /** 'each': every message to all dests (multicast/pubsub); 'turn': one dest per message, round robin. */
  readonly fanout: 'each' | 'turn';
  /** Partial multicast: deliver to the dests with room, report the others. */
  readonly partial: boolean;
  /** Offered load in messages (requests) per second; 0 = as fast as it can. */
  readonly ratePerSec: number;
  /** Messages (requests) to send in all; 0 = until stopped. */
  readonly quota: number;
}

export interface PlanInput {
  readonly pattern: Pattern;
  readonly peers: number;
  readonly uids: number;
  readonly greedy: number;
  /** Total offered load of the paced senders; null = flat out. */
  readonly rate: number | null;
  /** Total messages to send; null = until the duration ends. */
  readonly messages: number | null;
}

/** Offered load of the polite uids when --greedy is given without --rate. */
export const POLITE_RATE = 1000;

export function planPeers(p: PlanInput): PeerPlan[] {
  const n = p.peers;
  const idx = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
  let senders: number[];
  let receivers: number[];
  let destsOf: (s: number, k: number) => number[];
  switch (p.pattern) {
    case 'unicast':
      senders = idx(0, Math.ceil(n / 2));
      receivers = idx(senders.length, n);
      destsOf = () => receivers;
      break;
    case 'pairs': {
      const pairs = Math.floor(n / 2);
      senders = idx(0, pairs);
      receivers = idx(pairs, 2 * pairs);
      destsOf = (_s, k) => [receivers[k]!];
      break;
    }
    case 'fanin':
    case 'reqrep':
      senders = idx(0, n - 1);
      receivers = [n - 1];
      destsOf = () => receivers;
      break;
    case 'multicast':
    case 'pubsub':
      senders = [0];
      receivers = idx(1, n);
      destsOf = () => receivers;
      break;
  }
  const sendRole: Role = p.pattern === 'reqrep' ? 'client' : 'sender';
  const recvRole: Role = p.pattern === 'reqrep' ? 'server' : 'receiver';
  const uidOf = (k: number) => 1 + (k % p.uids);
  const greedyUid = (uid: number) => uid <= p.greedy;
  const rate = p.rate ?? (p.greedy > 0 ? POLITE_RATE : null);
  const paced = senders.filter((_, k) => !greedyUid(uidOf(k))).length;
  const out: PeerPlan[] = [];
  senders.forEach((s, k) => {
    const uid = uidOf(k);
    const quota = p.messages === null ? 0 : Math.floor(p.messages / senders.length) + (k < p.messages % senders.length ? 1 : 0);
    out.push({
      index: s, role: sendRole, uid, dests: destsOf(s, k),
      fanout: p.pattern === 'multicast' || p.pattern === 'pubsub' ? 'each' : 'turn',
      partial: p.pattern === 'pubsub',
      ratePerSec: rate === null || greedyUid(uid) || paced === 0 ? 0 : rate / paced,
      quota: p.messages === null ? 0 : Math.max(1, quota),
    });
  });
  for (const r of receivers) {
    out.push({ index: r, role: recvRole, uid: SERVICE_UID, dests: [], fanout: 'turn', partial: false, ratePerSec: 0, quota: 0 });
  }
  return out.sort((a, b) => a.index - b.index);
}

export function isSender(p: PeerPlan): boolean {
  return p.role === 'sender' || p.role === 'client';
}

// ---- the control block -------------------------------------------------------------------

/** Flags (Int32 indices): the main thread raises them, every peer thread watches them. */
export const STOP = 0;
export const DRAIN = 1;
/** Per-peer counters, each peer on its own 64-byte line. */
const COUNTERS_BASE = 16;
const LINE = 16;
export const SENT = 0;
export const RECEIVED = 1;
export const REFUSED = 2;

export function controlBlock(peers: number): SharedArrayBuffer {
  return new SharedArrayBuffer((COUNTERS_BASE + peers * LINE) * 4);
}

export function counterIndex(peer: number, which: number): number {
  return COUNTERS_BASE + peer * LINE + which;
}

export function readCounter(i32: Int32Array, peer: number, which: number): number {
  return Atomics.load(i32, counterIndex(peer, which)) >>> 0;
}
