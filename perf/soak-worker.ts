/*
 * One peer of the soak run (perf/soak.ts), in its own worker.
 *
 *   - 'service': owns a node (created by the owner); receives everything, answers each
 *     request that carries a reply handle on that handle, then releases the handle.
 *   - 'client': lives for workerData.lifeMs, doing mixed traffic against the services
 *     through the handles it was given: unicast sends, atomic multicasts, requests
 *     carrying a handle to its own inbox node (answered by the service), and post()
 *     bursts with flush(). It then ends in the way workerData.end says: close(), an
 *     uncaught throw, or process.exit() (the owner may also terminate() it).
 *
 * EDQUOT and ESHUTDOWN (a service that is behind, a peer that left) are part of the
 * traffic, counted, never fatal. Every wait is bounded.
 * Posts: { type: 'stats', sent, received, replies, refused } now and then, and
 *        { type: 'done', ... } before a client ends on its own.
 */

import { workerData, parentPort } from 'node:worker_threads';
import { Peer, BusError, type Message, type PeerTicket } from '../src/index.js';

export interface SoakWorkerData {
  ticket: PeerTicket;
  role: 'service' | 'client';
  /** client: handles to the services' nodes */
  services?: number[];
  lifeMs?: number;
  end?: 'close' | 'throw' | 'exit' | 'terminate';
  seed?: number;
}

export interface SoakStats {
  type: 'stats' | 'done';
  sent: number;
  received: number;
  replies: number;
  refused: number;
}

const data = workerData as SoakWorkerData;
const peer = Peer.open(data.ticket);
const stats: SoakStats = { type: 'stats', sent: 0, received: 0, replies: 0, refused: 0 };
let seed = data.seed ?? 1;
const rand = (n: number) => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 8) % n;
};

function report(type: 'stats' | 'done'): void {
  parentPort!.postMessage({ ...stats, type });
  stats.sent = stats.received = stats.replies = stats.refused = 0;
}

function expected(e: unknown): boolean {
  return e instanceof BusError && (e.code === 'EDQUOT' || e.code === 'ESHUTDOWN');
}

async function service(): Promise<void> {
  const timer = setInterval(() => report('stats'), 1000);
  try {
    for await (const m of peer) {
      if (m.type !== 'data') continue;
      stats.received++;
      const reply = m.handles.length > 0 ? m.handles[0] : 0;
      const text = m.data.byteLength;
      m.release();
      if (reply === 0) continue;
      try {
        await peer.send(reply, `reply to ${text} bytes`);
        stats.sent++;
      } catch (e) {
        if (!expected(e)) throw e;
        stats.refused++;
      }
      try {
        peer.releaseHandle(reply);
      } catch (e) {
        if (!expected(e)) throw e;
      }
    }
  } finally {
    clearInterval(timer);
  }
}

function drainInbox(): void {
  for (let m: Message | undefined = peer.tryRecv(); m !== undefined; m = peer.tryRecv()) {
    if (m.type === 'data') stats.replies++;
    m.release();
  }
}

async function client(): Promise<void> {
  const services = data.services!;
  const inbox = peer.createNode();
  const payload = new Uint8Array(256).fill(7);
  const end = performance.now() + data.lifeMs!;
  while (performance.now() < end) {
    const op = rand(10);
    const to = services[rand(services.length)];
    try {
      if (op < 4) {
        await peer.send(to, payload.subarray(0, 1 + rand(256)));
        stats.sent++;
      } else if (op < 6) {
        const a = rand(services.length);
        const b = (a + 1 + rand(services.length - 1)) % services.length;
        await peer.send([services[a], services[b]], 'multicast');
        stats.sent += 2;
      } else if (op < 8) {
        await peer.send(to, 'request', { handles: [inbox] });
        stats.sent++;
      } else {
        for (let i = 0; i < 16; i++) peer.post(to, payload.subarray(0, 32));
        const { rejected } = await peer.flush();
        stats.sent += 16 - rejected.length;
        stats.refused += rejected.length;
      }
    } catch (e) {
      if (!expected(e)) throw e;
      stats.refused++;
      await new Promise((r) => setTimeout(r, 1));
    }
    drainInbox();
    // A little pacing: the soak measures leaks, not throughput, on a shared machine.
    if (rand(8) === 0) await new Promise((r) => setTimeout(r, 1));
  }
  drainInbox();
  report('done');
  switch (data.end) {
    case 'throw':
      setImmediate(() => { throw new Error('soak client crashes on purpose'); });
      return;
    case 'exit':
      process.exit(7);
    // falls through (never reached)
    case 'terminate':
      // Stay busy until the owner terminates this thread.
      await new Promise((r) => setTimeout(r, 60_000));
      return;
    default:
      await peer.close();
  }
}

parentPort!.postMessage({ type: 'ready' });
if (data.role === 'service') await service();
else await client();
