/*
 * PeerTicket: what the owner hands to the thread that will open a peer.
 *
 * A ticket is plain, structured-cloneable data: the peer's two SharedArrayBuffers, the
 * doorbell, the sizes needed to map them, and a MessagePort whose other end the
 * coordinator holds, so that the coordinator sees the peer's thread die (the port
 * closes), even by worker.terminate(). Post it with its own transfer list:
 *   new Worker(url, { workerData: { ticket }, transferList: ticket.transfer })
 * The uid inside is informative only: the coordinator keeps the real one, fixed when
 * the owner created the peer, so a peer cannot change it. A ticket opens once (the
 * CTL_OPENED word in the peer's IN buffer is claimed with compare-and-swap).
 */

import type { MessagePort, TransferListItem } from 'node:worker_threads';
import { BusError } from './errors.js';
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
  readonly port: MessagePort | null;
  /** What must go in the transfer list when the ticket is posted to another thread. */
  readonly transfer: TransferListItem[];
}

export function checkTicket(t: unknown, what: string): asserts t is PeerTicket {
  const x = t as PeerTicket;
  if (typeof x !== 'object' || x === null || x.kind !== 'threadbus.ticket'
    || !(x.inSab instanceof SharedArrayBuffer) || !(x.outSab instanceof SharedArrayBuffer)
    || typeof x.peerId !== 'number') {
    throw new BusError('EINVAL', `${what}: expected a PeerTicket from bus.createPeer()`);
  }
}
