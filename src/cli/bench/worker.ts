/*
 * Entry point of every `threadbus bench` peer thread: one peer, one role, over the
 * transport the main thread chose (threadbus, or postMessage for --compare).
 */

import { workerData } from 'node:worker_threads';
import { PeerThread } from './peer-thread.js';
import { runThreadbus, type ThreadbusInit } from './threadbus-roles.js';
import { runMessagePort, type MessagePortInit } from './messageport-roles.js';

export type WorkerInit = ThreadbusInit | MessagePortInit;

const init = workerData as WorkerInit;
const thread = new PeerThread(init);
if (init.transport === 'threadbus') await runThreadbus(thread, init);
else await runMessagePort(thread, init);
