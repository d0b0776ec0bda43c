/*
 * PeerTicket: what the owner hands to the thread that will open a peer.
 *
 * A ticket is plain, structured-cloneable data: the peer's SharedArrayBuffer, the
 * doorbell, the sizes needed to map them, the coordinator's threadId, and a MessagePort
 * whose other end the coordinator holds, so that it sees a thread die that received the
 * ticket but never opened it. Post it with its own transfer list:
 *   new Worker(url, { workerData: { ticket }, transferList: ticket.transfer })
 * That port is made only when the ticket is about to leave the owner's thread: `port`
 * and `transfer` are getters on the owner's copy (posting reads them), so a ticket opened
 * where it was minted costs no channel. Peer.open() closes it once the ticket is claimed:
 * from then on the peer is watched with every other peer of its thread, by one channel
 * per thread (src/peer/watch.ts).
 * The uid inside is informative only: the coordinator keeps the real one, fixed when
 * the owner created the peer, so a peer cannot change it. A ticket opens once (the
 * CTL_OPENED word of the peer's control block is claimed with compare-and-swap).
 */

import { MessagePort, type TransferListItem } from 'node:worker_threads';
import { BusError } from './errors.js';
import { CONTROL_BYTES, peerLayout } from '../shared/layout.js';
import type { Limits } from './coordinator/ledger.js';

export interface PeerTicket {
  readonly kind: 'threadbus.ticket';
  readonly peerId: number;
  readonly uid: number;
  readonly limits: Limits;
  /** The peer's rings and first pool segment: its OUT ring at outOffset, and IN (shared/layout.ts). */
  readonly inSab: SharedArrayBuffer;
  /** The peer's control block (CONTROL_BYTES): state, claim, acknowledgements, bell (shared/layout.ts). */
  readonly ctlSab: SharedArrayBuffer;
  readonly doorbell: SharedArrayBuffer;
  readonly outOffset: number;
  readonly outRingBytes: number;
  readonly verdictOffset: number;
  readonly descriptorOffset: number;
  readonly descriptorSlots: number;
  readonly maxMessageBytes: number;
  /** The coordinator's threadId: where Peer.open() sends this thread's death watch. */
  readonly busThread: number;
  /** Watches the thread the ticket went to until it opens the ticket (made on first read in the owner). */
  readonly port: MessagePort | null;
  /** What must go in the transfer list when the ticket is posted to another thread. */
  readonly transfer: TransferListItem[];
}

/** The ports the owner made for its own tickets, by ticket (see heldPort). */
export const lentPorts = new WeakMap<object, MessagePort>();

/**
 * The ticket's port if it has one, without making one: the owner's copy makes its port
 * on first read (a getter), which a ticket opened in the owner's thread never needs.
 */
export function heldPort(t: PeerTicket): MessagePort | null {
  const d = Object.getOwnPropertyDescriptor(t, 'port');
  if (d === undefined) return null;
  if (d.get !== undefined) return lentPorts.get(t) ?? null;
  return (d.value as MessagePort | null | undefined) ?? null;
}

const isPow2 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/**
 * A ticket is what bus.createPeer() returned: its fields have their types, and its
 * buffers the sizes its numbers say (so that mapping them cannot throw or read outside
 * them). Anything else is EINVAL.
 */
export function checkTicket(t: unknown, what: string): asserts t is PeerTicket {
  const x = t as PeerTicket;
  const bad = (why: string) => new BusError('EINVAL', `${what}: expected a PeerTicket from bus.createPeer() (${why})`);
  if (typeof x !== 'object' || x === null || x.kind !== 'threadbus.ticket') throw bad('not a ticket');
  if (!(x.inSab instanceof SharedArrayBuffer) || !(x.ctlSab instanceof SharedArrayBuffer) || x.ctlSab.byteLength !== CONTROL_BYTES
    || !(x.doorbell instanceof SharedArrayBuffer) || x.doorbell.byteLength < 4) throw bad('its buffers are missing');
  if (!Number.isSafeInteger(x.peerId) || x.peerId <= 0 || !Number.isSafeInteger(x.uid) || x.uid < 0) throw bad('bad ids');
  if (!isPow2(x.outRingBytes)) throw bad('bad OUT ring size');
  if (!isPow2(x.descriptorSlots)) throw bad('bad layout');
  const layout = peerLayout(x.outRingBytes, x.descriptorSlots, 0);
  if (x.outOffset !== layout.outOffset || x.verdictOffset !== layout.verdictOffset
    || x.descriptorOffset !== layout.descriptorOffset || x.inSab.byteLength < layout.poolOffset) throw bad('bad layout');
  if (!Number.isSafeInteger(x.maxMessageBytes) || x.maxMessageBytes < 0) throw bad('bad maxMessageBytes');
  if (!Number.isSafeInteger(x.busThread) || x.busThread < 0) throw bad('bad busThread');
  const port = heldPort(x);
  if (port !== null && !(port instanceof MessagePort)) throw bad('bad port');
}
