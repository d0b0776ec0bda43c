/*
 * How the examples' workers print: each logs on a MessagePort of its own, which the owner
 * listens to before the worker starts. A worker's 'message' event listened to only once
 * bus.spawn() resolved could miss the worker's first lines (spawn resolves after the
 * worker has opened its peer, and it may have posted by then).
 */

import { MessageChannel, workerData, type MessagePort } from 'node:worker_threads';

const listening: MessagePort[] = [];

/** Owner side: spawn options that give a worker of `role` its log port, printed here. */
export function logged(role: string): { workerData: { role: string; log: MessagePort }; transferList: MessagePort[] } {
  const { port1, port2 } = new MessageChannel();
  port1.on('message', (line) => console.log(line));
  listening.push(port1);
  return { workerData: { role, log: port2 }, transferList: [port2] };
}

/** Owner side, once the workers are gone: lines already posted still arrive; the ports keep nothing alive. */
export function stopListening(): void {
  for (const port of listening) port.unref();
}

/** Worker side: this worker's role, and a function that prints a line through the owner. */
export function workerLog<R extends string>(): { role: R; log: (line: string) => void } {
  const { role, log: port } = workerData as { role: R; log: MessagePort };
  return { role, log: (line: string) => port.postMessage(`[${role}] ${line}`) };
}
