// The program `npm run profile -- <workload>` runs under `threadbus profile`: one
// threadbus workload for RUN_MS, every thread ending normally so that each writes
// its profile. It knows nothing of the profiler: its workers are named after their
// roles (sender, receiver, ...), and that is what the flame graphs are called.

import { Worker } from 'node:worker_threads';
import { Bus, type PeerTicket } from '../../src/index.js';
import { STOP, EXPECTED, WORKLOADS, type ProfileWorkload } from './workloads.js';

const RUN_MS = 2000;
const PAYLOAD_BYTES = 64;
/** fanin uses 8 senders: a flame graph per thread is only readable for a few threads. */
const FANIN_SENDERS = 8;
const MULTICAST_RECEIVERS = 4;
/** How long a peer thread may take to exit after closing its peer. */
const EXIT_GRACE_MS = 3000;

const workload = process.argv[2] as ProfileWorkload;
if (!WORKLOADS.includes(workload)) {
  console.error(`usage: npm run profile -- <workload>\n  workloads: ${WORKLOADS.join(', ')}`);
  process.exit(2);
}
const bus = await Bus.start({ userLimits: { messages: 1 << 18 } });
const ctl = new SharedArrayBuffer(8);
const ctlI32 = new Int32Array(ctl);
const workers: { w: Worker; role: string; name: string; done: Promise<{ count: number }> }[] = [];

function start(role: 'sender' | 'receiver' | 'client' | 'server', name: string, ticket: PeerTicket, to: number[]): void {
  const w = new Worker(new URL('./peer.js', import.meta.url), {
    workerData: { role, ticket, to, payloadBytes: PAYLOAD_BYTES, ctl }, transferList: ticket.transfer, name,
  });
  const done = new Promise<{ count: number }>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  workers.push({ w, role, name, done });
}

async function receiver(uid: number): Promise<{ ticket: PeerTicket; node: number }> {
  const ticket = await bus.createPeer({ uid });
  return { ticket, node: await bus.createNode(ticket) };
}

const receivers: { ticket: PeerTicket; node: number }[] = [];
const senders: { ticket: PeerTicket; to: number[]; name: string; role: 'sender' | 'client' | 'server' }[] = [];
if (workload === 'request-reply') {
  const server = await receiver(2);
  const client = await receiver(1);
  senders.push({ ticket: client.ticket, to: [await bus.transferHandle(server.ticket, server.node, client.ticket)], name: 'client', role: 'client' });
  senders.push({ ticket: server.ticket, to: [await bus.transferHandle(client.ticket, client.node, server.ticket)], name: 'server', role: 'server' });
} else {
  const nReceivers = workload === 'multicast' ? MULTICAST_RECEIVERS : 1;
  const nSenders = workload === 'fanin' ? FANIN_SENDERS : 1;
  for (let r = 0; r < nReceivers; r++) receivers.push(await receiver(1000 + r));
  for (let s = 0; s < nSenders; s++) {
    const ticket = await bus.createPeer({ uid: 1, limits: { messages: 64, bytes: 65536 } });
    const to: number[] = [];
    for (const r of receivers) to.push(await bus.transferHandle(r.ticket, r.node, ticket));
    senders.push({ ticket, to, name: nSenders > 1 ? `sender-${s + 1}` : 'sender', role: 'sender' });
  }
}
receivers.forEach((r, i) => start('receiver', receivers.length > 1 ? `receiver-${i + 1}` : 'receiver', r.ticket, []));
for (const s of senders) start(s.role, s.name, s.ticket, s.to);

await new Promise((r) => setTimeout(r, RUN_MS));
Atomics.store(ctlI32, STOP, 1);
const producers = workers.filter((x) => x.role === 'sender' || x.role === 'client');
const sent = (await Promise.all(producers.map((x) => x.done))).reduce((a, r) => a + r.count, 0);
// Each receiver gets every message (multicast) or its own share (unicast, fan-in): one receiver there.
Atomics.store(ctlI32, EXPECTED, Math.max(1, sent));
const results = await Promise.all(workers.map((x) => x.done));
// Each thread writes its profile as it exits. A worker that has not exited soon after
// its peer closed is left behind (known issue: a worker that used post()/flush() under
// backpressure can fail to exit; its profile is then lost, the others are kept).
const lingering: string[] = [];
await Promise.all(workers.map((x) => new Promise<void>((resolve) => {
  const timer = setTimeout(() => {
    lingering.push(x.name);
    resolve();
  }, EXIT_GRACE_MS);
  x.w.once('exit', () => {
    clearTimeout(timer);
    resolve();
  });
})));
if (lingering.length > 0) console.error(`still running ${EXIT_GRACE_MS} ms after closing their peers (no profile): ${lingering.join(', ')}`);
await bus.close();
console.log(`${workload}: ${sent} messages in ${RUN_MS} ms by ${producers.length} producer(s); ${results.length} peer threads`);
// Lingering workers would keep this process alive; the profiles that exist are written.
process.exit(0);
