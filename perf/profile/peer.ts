// A peer thread for `npm run profile`: sender, receiver, client or server.
// It runs until the main thread raises STOP (senders, clients) or until it has
// seen the number of messages the main thread posts in EXPECTED (receivers,
// servers), then closes its peer and returns, so that its CPU profile is written.

import { parentPort, workerData } from 'node:worker_threads';
import { Peer, type PeerTicket } from '../../src/index.js';

import { STOP, EXPECTED } from './workloads.js';

interface PeerJob {
  role: 'sender' | 'receiver' | 'client' | 'server';
  ticket: PeerTicket;
  to: number[];
  payloadBytes: number;
  ctl: SharedArrayBuffer;
}

const job = workerData as PeerJob;
const ctl = new Int32Array(job.ctl);
const peer = Peer.open(job.ticket);
const payload = new Uint8Array(job.payloadBytes).fill(7);
const to: number | number[] = job.to.length === 1 ? job.to[0]! : job.to;
/** Posts between two flush() calls. */
const POST_WINDOW = 32768;
let count = 0;
let checksum = 0;

switch (job.role) {
  case 'sender': {
    // Windows of posts; what the quota refused (the receiver was behind) is posted again
    // first, before anything new (and even after STOP), so that nothing counted is lost.
    let retry = 0;
    for (;;) {
      let posted = 0;
      for (; posted < retry; posted++) peer.post(to, payload);
      while (posted < POST_WINDOW && Atomics.load(ctl, STOP) === 0) {
        peer.post(to, payload);
        posted++;
      }
      if (posted === 0) break;
      retry = (await peer.flush()).rejected.length;
      count += posted - retry;
      if (retry > 0) await new Promise((r) => setTimeout(r, 1));
    }
    break;
  }
  case 'client':
    while (Atomics.load(ctl, STOP) === 0) {
      peer.post(to, payload);
      const m = peer.recvSync(1000);
      if (m === undefined) break;
      checksum += m.data[0]!;
      m.release();
      count++;
    }
    await peer.flush();
    break;
  case 'receiver':
  case 'server':
    for (;;) {
      const expected = Atomics.load(ctl, EXPECTED);
      if (expected > 0 && count >= expected) break;
      const m = peer.recvSync(20);
      if (m === undefined) {
        if (job.role === 'server' && Atomics.load(ctl, STOP) !== 0) break;
        continue;
      }
      checksum += m.data[m.data.length - 1]!;
      m.release();
      count++;
      if (job.role === 'server') peer.post(to, payload);
    }
    break;
}
await peer.close();
parentPort!.postMessage({ count, checksum });
