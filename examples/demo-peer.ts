/*
 * One peer of the demo: opens its ticket, then plays its part (echo service or client).
 */

import { workerData, parentPort } from 'node:worker_threads';
import { Peer, type PeerTicket } from '../src/index.js';

const { ticket, role, service, name } = workerData as { ticket: PeerTicket; role: 'service' | 'client'; service?: number; name: string };
const peer = Peer.open(ticket);
const log = (line: string) => parentPort!.postMessage(`[${name} uid=${peer.uid}] ${line}`);

if (role === 'service') {
  // Answer every request on the reply handle it carries, until the bus closes.
  for await (const msg of peer) {
    if (msg.type !== 'data') {
      log(`got ${msg.type} for handle ${msg.destination}`);
      continue;
    }
    const text = msg.text();
    const [replyTo] = msg.handles;
    log(`request #${msg.seq} from uid ${msg.senderUid}: "${text}"`);
    msg.release();
    await peer.send(replyTo, `echo: ${text.toUpperCase()}`);
    peer.releaseHandle(replyTo);
  }
} else {
  const inbox = peer.createNode();
  for (const word of ['hello', 'threadbus', 'bye']) {
    await peer.send(service!, word, { handles: [inbox] });
    const reply = await peer.recv();
    log(`reply #${reply.seq}: "${reply.text()}"`);
    reply.release();
  }
  await peer.close();
  log('closed');
}
