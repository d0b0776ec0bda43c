/*
 * Entry point of every `threadbus bench` peer thread: one peer, one role, over the
 * transport the main thread chose (threadbus, or postMessage for --compare).
 * Each transport's roles are imported only by the threads that use them: a
 * postMessage thread of --compare never loads the threadbus library (about 75 ms of
 * CPU per thread here, 65 threads in a fan-in of 64: seconds of setup on 2 cores).
 */

import { workerData } from 'node:worker_threads';
import { PeerThread } from './peer-thread.js';
import type { ThreadbusInit } from './threadbus-roles.js';
import type { MessagePortInit } from './messageport-roles.js';

export type WorkerInit = ThreadbusInit | MessagePortInit;

const init = workerData as WorkerInit;
const thread = new PeerThread(init);
if (init.transport === 'threadbus') await (await import('./threadbus-roles.js')).runThreadbus(thread, init);
else await (await import('./messageport-roles.js')).runMessagePort(thread, init);
