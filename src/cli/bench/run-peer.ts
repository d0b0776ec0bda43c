/*
 * One peer of a bench phase, in whatever thread runs it: a Worker of its own
 * (worker.ts) or a thread lent by the caller (engine.ts ThreadLauncher). Each
 * transport's roles are imported only by the threads that use them: a postMessage
 * thread of --compare never loads the threadbus library (about 75 ms of CPU per thread
 * here, 65 threads in a fan-in of 64: seconds of setup on 2 cores).
 */

import type { MessagePort } from 'node:worker_threads';
import { PeerThread } from './peer-thread.js';
import type { ThreadbusInit } from './threadbus-roles.js';
import type { MessagePortInit } from './messageport-roles.js';

export type WorkerInit = ThreadbusInit | MessagePortInit;

/** Run the peer `init` describes to its end; it reports on `port` (default: the parent's). */
export async function runPeer(init: WorkerInit, port?: MessagePort): Promise<void> {
  const thread = new PeerThread(init, port);
  if (init.transport === 'threadbus') await (await import('./threadbus-roles.js')).runThreadbus(thread, init);
  else await (await import('./messageport-roles.js')).runMessagePort(thread, init);
}
