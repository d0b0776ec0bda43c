/*
 * threadbus: the bus1 message bus on worker_threads. The public surface; everything a
 * user imports comes from here (names and shapes fixed by the API contract).
 */

export { Bus, type BusOptions, type Usage } from './bus.js';
export {
  Peer, type SendOptions, type MulticastOptions, type SendReport, type PostReport, type QueryResult,
} from './peer.js';
export { Message, type HandleId, type MessageType } from './message.js';
export { BusError, type BusErrorCode, type ResourceName } from './errors.js';
export { NodeRef, type SpawnOptions, type Spawned } from './spawn.js';
export type { RequestOptions } from './request.js';
export { Subscription, Topic, type PublishReport } from './topic.js';
export type { WaitOptions } from './waiting.js';
export type { BusStats, UidStats, PeerStats } from './stats.js';
export type { ValueKind } from './values.js';
export type { PeerTicket } from './ticket.js';
export type { Limits } from './coordinator/ledger.js';
export { INVALID_HANDLE } from '../shared/layout.js';
