/*
 * `npm run demo`: a service and two clients, each in its own worker, talking through
 * the bus. The clients pass a handle to their own inbox node with each request, so
 * the service can answer without knowing anything else about them; at the end the
 * bus shows that every charge was given back.
 */

import { Worker } from 'node:worker_threads';
import { Bus } from '../src/index.js';

const bus = await Bus.start({ userLimits: { messages: 1024 } });
const serviceTicket = await bus.createPeer({ uid: 100 });
const serviceNode = await bus.createNode(serviceTicket);

const workers: Worker[] = [];
const exited: Promise<void>[] = [];
function spawn(workerData: object, transferList: readonly unknown[]): Worker {
  const w = new Worker(new URL('./demo-peer.js', import.meta.url), { workerData, transferList: transferList as never });
  w.on('message', (line) => console.log(line));
  w.on('error', (e) => console.error('worker failed:', e));
  exited.push(new Promise((r) => w.once('exit', () => r())));
  workers.push(w);
  return w;
}

spawn({ ticket: serviceTicket, role: 'service', name: 'service' }, serviceTicket.transfer);
for (const [i, uid] of [1000, 1001].entries()) {
  const t = await bus.createPeer({ uid });
  const handle = await bus.transferHandle(serviceTicket, serviceNode, t);
  spawn({ ticket: t, role: 'client', service: handle, name: `client${i + 1}` }, t.transfer);
}

await Promise.all(exited.slice(1));
for (const uid of [100, 1000, 1001]) {
  const u = await bus.usage(uid);
  const note = uid === 100 ? '  (the service still holds the handle of its own, live node)' : '';
  console.log(`usage uid=${uid}: remaining ${JSON.stringify(u.remaining)} of ${JSON.stringify(u.max)}${note}`);
}
await bus.close();
await exited[0];
console.log('bus closed; every worker has exited');
