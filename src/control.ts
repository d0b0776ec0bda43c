/*
 * The owner <-> coordinator control protocol (a MessagePort, never the data path).
 * Requests carry an id; each gets exactly one reply with the same id, except
 * 'test-crash'. The owner posts the requests made in one task as one message, an array
 * (a lone request goes bare), and the coordinator answers each message with one message
 * (an array when it answered an array), so that many createPeer calls cost one round
 * trip. Errors travel as BusErrorData and are rebuilt into BusError on arrival
 * (src/errors.ts).
 */

import type { MessagePort } from 'node:worker_threads';
import type { BusErrorData } from './errors.js';
import type { Limits } from './coordinator/ledger.js';
import type { PeerCreated } from './coordinator/coordinator.js';

export type ControlRequest =
  | { id: number; op: 'createPeer'; uid: number; limits?: Partial<Limits>; name?: string }
  | { id: number; op: 'createNode'; peerId: number }
  | { id: number; op: 'transferHandle'; fromId: number; handle: number; toId: number }
  | { id: number; op: 'usage'; uid: number }
  | { id: number; op: 'stats' }
  // bus.spawn() whose worker never opened its ticket: disconnect that peer (src/spawn.ts).
  | { id: number; op: 'dropPeer'; peerId: number }
  // The port of a ticket about to leave the owner's thread (src/ticket.ts): when it closes
  // before the ticket was opened, the thread that got it is gone.
  | { id: number; op: 'watchTicket'; peerId: number; port: MessagePort }
  | { id: number; op: 'close' }
  // Test only (sent through coordinatorWorkerOf, never by Bus): an uncaught error in the coordinator.
  | { id: number; op: 'test-crash' };

export type ControlReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: BusErrorData };

/** The 'workerMessage' (postMessageToThread) that carries a thread's death watch: { kind, port }. */
export const WATCH_KIND = 'threadbus.watch';

/** The coordinator's first message (id 0): what every ticket shares. */
export interface ControlStarted {
  doorbell: SharedArrayBuffer;
  /** The coordinator's threadId, where peers send their thread's death watch. */
  busThread: number;
  /** Every peer's OUT ring size and largest payload (the bus's, fixed at start). */
  outRingBytes: number;
  maxMessageBytes: number;
}

/**
 * createPeer's reply as it travels: [peerId, buffer, control block, descriptorSlots,
 * messages, handles, bytes]. What every peer shares is in ControlStarted, and the owner works the layout
 * out from the sizes (shared/layout.ts peerLayout): such an array is cloned in about a
 * quarter of the time of the whole PeerCreated object (1 against 4 us, measured when it
 * held six values).
 */
export type PeerCreatedWire = [number, SharedArrayBuffer, SharedArrayBuffer, number, number, number, number];

export function peerCreatedWire(c: PeerCreated): PeerCreatedWire {
  return [c.peerId, c.inSab, c.ctlSab, c.descriptorSlots, c.limits.messages, c.limits.handles, c.limits.bytes];
}
