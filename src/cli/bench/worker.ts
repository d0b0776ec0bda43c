/*
 * Entry point of every `threadbus bench` peer thread of its own: one peer, one role,
 * over the transport the main thread chose (threadbus, or postMessage for --compare).
 */

import { workerData } from 'node:worker_threads';
import { runPeer, type WorkerInit } from './run-peer.js';

export type { WorkerInit };

await runPeer(workerData as WorkerInit);
