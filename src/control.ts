/*
 * The owner <-> coordinator control protocol (a MessagePort, never the data path).
 * Requests carry an id; each gets exactly one reply with the same id. Errors travel as
 * BusErrorData and are rebuilt into BusError on arrival (src/errors.ts).
 */

import type { MessagePort } from 'node:worker_threads';
import type { BusErrorData } from './errors.js';
import type { PeerCreated } from './coordinator/coordinator.js';
import type { Limits } from './coordinator/ledger.js';

export type ControlRequest =
  | { id: number; op: 'createPeer'; uid: number; limits?: Partial<Limits>; name?: string }
  | { id: number; op: 'createNode'; peerId: number }
  | { id: number; op: 'transferHandle'; fromId: number; handle: number; toId: number }
  | { id: number; op: 'usage'; uid: number }
  | { id: number; op: 'stats' }
  | { id: number; op: 'close' }
  // Test only (sent through coordinatorWorkerOf, never by Bus): an uncaught error in the coordinator.
  | { id: number; op: 'test-crash' };

export type ControlReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: BusErrorData };

/** What the coordinator returns for createPeer; the owner wraps it into a PeerTicket. */
export type PeerMemory = PeerCreated & { doorbell: SharedArrayBuffer; port: MessagePort };
