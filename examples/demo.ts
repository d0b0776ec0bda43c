/*
 * `npm run demo`: a service and two clients, each in its own worker, talking through
 * the bus with the everyday API. bus.spawn() makes each worker with its peer, its named
 * nodes and the handles it starts with; the clients call the service with request() and
 * follow its events with subscribe(); the service answers with msg.reply() and publishes
 * to a topic. At the end bus.stats() and bus.usage() show what happened, and that every
 * charge was given back.
 */

import { Bus } from '../src/index.js';

const bus = await Bus.start({ userLimits: { messages: 1024 } });
const url = new URL('./demo-peer.js', import.meta.url);
const print = (line: unknown) => console.log(line);

const service = await bus.spawn(url, { uid: 100, nodes: ['rpc', 'events'], workerData: { role: 'service' }, name: 'service' });
service.worker.on('message', print);
const clients = [];
for (const [i, uid] of [1000, 1001].entries()) {
  const c = await bus.spawn(url, {
    uid, handles: { rpc: service.nodes.rpc, events: service.nodes.events }, workerData: { role: 'client' }, name: `client${i + 1}`,
  });
  c.worker.on('message', print);
  clients.push(c);
}

await Promise.all(clients.map((c) => c.exited));
const stats = await bus.stats();
for (const uid of [100, 1000, 1001]) {
  const s = stats.byUid[uid];
  const u = await bus.usage(uid);
  const note = uid === 100 ? '  (the service still holds its two live nodes)' : '';
  console.log(`uid ${uid}: sent ${s.sent}, received ${s.received}; remaining ${JSON.stringify(u.remaining)} of ${JSON.stringify(u.max)}${note}`);
}
await bus.close();
await service.exited;
console.log('bus closed; every worker has exited');
