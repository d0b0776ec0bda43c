/*
 * One peer of the demo, in a worker made by bus.spawn(): Peer.open() with no argument
 * opens it, and peer.handles names what it was given.
 */

import { workerData, parentPort } from 'node:worker_threads';
import { Peer } from '../src/index.js';

const peer = Peer.open();
const { role } = workerData as { role: 'service' | 'client' };
const log = (line: string) => parentPort!.postMessage(`[${role} uid=${peer.uid}] ${line}`);

if (role === 'service') {
  // Answer requests; tell every subscriber about each one. Runs until the bus closes.
  const topic = peer.topic();
  for await (const msg of peer) {
    if (msg.isSubscribe) {
      topic.add(msg);
      log(`uid ${msg.senderUid} subscribed ("${msg.value()}")`);
    } else if (msg.isRequest) {
      const word = msg.value() as string;
      log(`request from uid ${msg.senderUid}: "${word}"`);
      await msg.reply({ echo: word.toUpperCase(), length: word.length });
      await topic.publish(`uid ${msg.senderUid} asked about "${word}"`);
    }
    msg.release();
  }
} else {
  const events = await peer.subscribe(peer.handles.events, 'hello');
  const seen = (async () => {
    for await (const ev of events) {
      log(`event: ${ev.value()}`);
      ev.release();
    }
  })();
  for (const word of ['hello', 'threadbus', 'bye']) {
    const reply = await peer.request(peer.handles.rpc, word, { timeout: 5000 });
    log(`reply: ${JSON.stringify(reply.value())}`);
    reply.release();
  }
  events.close();
  await seen;
  await peer.close();
  log('closed');
}
