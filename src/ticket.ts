/*
 * PeerTicket: what the owner hands to the thread that will open a peer.
 *
 * A ticket is plain, structured-cloneable data: the peer's two SharedArrayBuffers, the
 * doorbell, the sizes needed to map them, and the coordinator's threadId. It carries no
 * MessagePort (port is null, transfer empty): the death watch is one channel per thread
 * that opens peers, not one per ticket (src/peer/watch.ts). Post it with its own
 * transfer list all the same, so that code keeps working if a ticket ever needs one:
 *   new Worker(url, { workerData: { ticket }, transferList: ticket.transfer })
 * The uid inside is informative only: the coordinator keeps the real one, fixed when
 * the owner created the peer, so a peer cannot change it. A ticket opens once (the
 * CTL_OPENED word in the peer's IN buffer is claimed with compare-and-swap).
 */

import { MessagePort, type TransferListItem } from 'node:worker_threads';
import { BusError } from './errors.js';
import { CONTROL_BYTES, RING_HEADER_BYTES, inLayout } from '../shared/layout.js';
import type { Limits } from './coordinator/ledger.js';

export interface PeerTicket {
  readonly kind: 'threadbus.ticket';
  readonly peerId: number;
  readonly uid: number;
  readonly limits: Limits;
  readonly outSab: SharedArrayBuffer;
  readonly inSab: SharedArrayBuffer;
  readonly doorbell: SharedArrayBuffer;
  readonly outRingBytes: number;
  readonly verdictOffset: number;
  readonly descriptorOffset: number;
  readonly descriptorSlots: number;
  readonly maxMessageBytes: number;
  /** The coordinator's threadId: where Peer.open() sends this thread's death watch. */
  readonly busThread: number;
  /** Always null (kept in the public shape; no port is needed since the death watch is per thread). */
  readonly port: MessagePort | null;
  /** What must go in the transfer list when the ticket is posted to another thread. */
  readonly transfer: TransferListItem[];
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
  if (!(x.inSab instanceof SharedArrayBuffer) || !(x.outSab instanceof SharedArrayBuffer)
    || !(x.doorbell instanceof SharedArrayBuffer) || x.doorbell.byteLength < 4) throw bad('its buffers are missing');
  if (!Number.isSafeInteger(x.peerId) || x.peerId <= 0 || !Number.isSafeInteger(x.uid) || x.uid < 0) throw bad('bad ids');
  if (!isPow2(x.outRingBytes) || x.outSab.byteLength !== RING_HEADER_BYTES + x.outRingBytes) throw bad('bad OUT ring size');
  if (!isPow2(x.descriptorSlots) || x.verdictOffset !== CONTROL_BYTES) throw bad('bad IN layout');
  const layout = inLayout(x.descriptorSlots, 0);
  if (x.descriptorOffset !== layout.descriptorOffset || x.inSab.byteLength < layout.poolOffset) throw bad('bad IN layout');
  if (!Number.isSafeInteger(x.maxMessageBytes) || x.maxMessageBytes < 0) throw bad('bad maxMessageBytes');
  if (!Number.isSafeInteger(x.busThread) || x.busThread <= 0) throw bad('bad busThread');
  if (x.port !== null && x.port !== undefined && !(x.port instanceof MessagePort)) throw bad('bad port');
}
