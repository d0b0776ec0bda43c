/*
 * `node dist/examples/pubsub.js`: one publisher, a fast subscriber and a slow one whose
 * uid has a small message quota. Every publish is one partial multicast: the slow
 * subscriber misses events once its uid is full (reported with its uid, EDQUOT), and the
 * fast one gets every event; nobody waits for the slow one. This file is both the owner
 * (main thread) and the three workers (by role).
 */

import { isMainThread } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { Bus, Peer } from '../src/index.js';
import { logged, stopListening, workerLog } from './worker-log.js';

const EVENTS = 40;

if (isMainThread) {
  // uid 2000's peers may hold 8 messages between them: the slow subscriber's budget.
  const bus = await Bus.start({ users: { 2000: { messages: 8 } } });
  const url = new URL(import.meta.url);
  const pub = await bus.spawn(url, { uid: 100, nodes: ['news'], ...logged('publisher') });
  const subs = await Promise.all([['fast', 1000], ['slow', 2000]].map(([role, uid]) =>
    bus.spawn(url, { uid: uid as number, handles: { news: pub.nodes.news }, ...logged(role as string) })));
  await Promise.all(subs.map((s) => s.exited));
  await pub.exited;
  stopListening();
  const s = await bus.stats();
  console.log(`refusals seen by the bus for the publisher's uid: ${JSON.stringify(s.byUid[100].refused)}`);
  await bus.close();
} else {
  const { role, log } = workerLog<'publisher' | 'fast' | 'slow'>();
  const peer = Peer.open();
  if (role === 'publisher') {
    const topic = peer.topic();
    const reading = (async () => {
      for await (const msg of peer) {
        if (msg.isSubscribe) topic.add(msg);
        msg.release();
      }
    })();
    while (topic.size < 2) await sleep(5);
    let missed = 0;
    for (let i = 0; i < EVENTS; i++) {
      const r = await topic.publish({ event: i });
      for (const { uid, error } of r.refused) {
        missed++;
        if (missed <= 3) log(`event ${i}: uid ${uid} refused it (${error.code}, ${error.resource})`);
      }
    }
    log(`published ${EVENTS} events; the slow subscriber's uid refused ${missed} of them`);
    topic.close(); // every subscriber's iteration ends
    await peer.close();
    await reading;
  } else {
    const sub = await peer.subscribe(peer.handles.news);
    let n = 0;
    for await (const ev of sub) {
      if (role === 'slow') await sleep(20); // a slow consumer: the quota holds it back, not the publisher
      n++;
      ev.release();
    }
    log(`got ${n} events`);
    await peer.close();
  }
}
