/*
 * `node dist/examples/waiting.js`: a producer much faster than its consumer. A plain
 * send() would meet EDQUOT once the consumer's uid is full; with { wait: 2000 } the send
 * waits instead, woken by the coordinator when the consumer gives a charge back, so the
 * producer runs at the consumer's pace and nothing is lost. This file is both the owner
 * and the two workers.
 */

import { isMainThread } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { Bus, BusError, Peer } from '../src/index.js';
import { logged, stopListening, workerLog } from './worker-log.js';

const COUNT = 200;

if (isMainThread) {
  const bus = await Bus.start({ users: { 2000: { messages: 16 } } });
  const url = new URL(import.meta.url);
  const consumer = await bus.spawn(url, { uid: 2000, nodes: ['inbox'], ...logged('consumer') });
  const producer = await bus.spawn(url, { uid: 1000, handles: { out: consumer.nodes.inbox }, ...logged('producer') });
  await Promise.all([consumer.exited, producer.exited]);
  stopListening();
  const s = await bus.stats();
  console.log(`producer sent ${s.byUid[1000].sent}, consumer received ${s.byUid[2000].received}`);
  await bus.close();
} else {
  const { role, log } = workerLog<'producer' | 'consumer'>();
  const peer = Peer.open();
  if (role === 'producer') {
    try {
      await peer.send(peer.handles.out, 'probe');
      let refused = 0;
      while (refused === 0) await peer.send(peer.handles.out, 'x').catch((e: BusError) => { refused++; log(`without wait: ${e.code} from uid ${e.uid}`); });
      for (let i = 0; i < COUNT; i++) await peer.send(peer.handles.out, { i }, { wait: 2000 });
      log(`sent ${COUNT} values with { wait }, none refused`);
      await peer.send(peer.handles.out, 'done', { wait: 2000 });
    } finally {
      await peer.close();
    }
  } else {
    let values = 0;
    for await (const msg of peer) {
      if (msg.type !== 'data') continue;
      const v = msg.value();
      msg.release();
      if (v === 'done') break;
      if (typeof v === 'object') values++;
      if (values % 50 === 0) await sleep(1); // slower than the producer
    }
    log(`received all ${values} values`);
    await peer.close();
  }
}
