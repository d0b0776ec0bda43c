/*
 * Peers of the scale run (perf/scale.ts): this worker opens every ticket it was given,
 * says ready, then for each peer, all at once: waits for one message on the peer's own
 * node (recv(), no timeout), answers it on the hub's handle, and closes the peer. The
 * worker then has nothing left to do and exits by itself; a message that is missing or
 * wrong is reported as an error.
 */

import { workerData, parentPort } from 'node:worker_threads';
import { Peer, type PeerTicket } from '../src/index.js';

export interface ScaleWorkerData {
  tickets: PeerTicket[];
  /** Each peer's handle id to the hub's node. */
  hub: number;
}

const { tickets, hub } = workerData as ScaleWorkerData;
const peers = tickets.map((t) => Peer.open(t));
parentPort!.postMessage({ type: 'ready' });
await Promise.all(peers.map(async (peer, i) => {
  const m = await peer.recv();
  const want = `ping ${tickets[i].peerId}`;
  const text = m.type === 'data' ? m.text() : `<${m.type}>`;
  m.release();
  if (text !== want) throw new Error(`peer ${tickets[i].peerId}: got "${text}", wanted "${want}"`);
  await peer.send(hub, `pong ${tickets[i].peerId}`);
  await peer.close();
}));
