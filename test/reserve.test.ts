/*
 * peer.reserve() + postReserved(): a message written in place in the OUT ring, so that a
 * large payload is copied once (by the coordinator, into the receiver's pool). The
 * sender runs in a worker (test/fixtures/reserve-peer.ts); the receiver is opened here
 * and checks every byte.
 */

import test from 'ava';
import { Worker } from 'node:worker_threads';
import { Peer } from '../src/index.js';
import { TestBus, within } from './helpers/remote-peer.js';

test('reserved messages arrive whole and in order, a cancelled one never arrives, and nothing else may be sent while one is open', async (t) => {
  const tb = await TestBus.start(t, { maxMessageBytes: 1 << 17 });
  const recvTicket = await tb.bus.createPeer({ uid: 2 });
  const receiver = Peer.open(recvTicket);
  const node = receiver.createNode();
  const sendTicket = await tb.bus.createPeer({ uid: 1 });
  const to = await tb.bus.transferHandle(recvTicket, node, sendTicket);
  const sizes = [0, 1, 48, 65536, 7, 100_000, 64];
  const cancelAt = 4;
  const worker = new Worker(new URL('./fixtures/reserve-peer.js', import.meta.url), {
    workerData: { ticket: sendTicket, to, sizes, cancelAt }, transferList: sendTicket.transfer,
  });
  t.teardown(() => worker.terminate());
  const report = await within(10_000, new Promise<{ busyCodes: string[]; rejected: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  }), 'the sender');
  t.deepEqual(report.busyCodes, ['EBUSY', 'EBUSY', 'EBUSY']);
  t.is(report.rejected, 0);
  for (let i = 0; i < sizes.length; i++) {
    if (i === cancelAt) continue;
    const m = await within(5000, receiver.recv(), `message ${i}`);
    t.is(m.data.length, sizes[i]);
    let bad = -1;
    for (let j = 0; j < m.data.length && bad < 0; j++) if (m.data[j] !== ((i * 31 + j) & 0xff)) bad = j;
    t.is(bad, -1, `message ${i}: first wrong byte`);
    m.release();
  }
  // The cancelled one came before the last two in the ring; what follows them can only
  // be the node-release of the sender's handle when it closes.
  for (let m = receiver.tryRecv(); m !== undefined; m = receiver.tryRecv()) t.not(m.type, 'data');
});
