/*
 * `npm run scale`: the bus at scale (issue 10, point 4), in two runs:
 *   A. 1000 peers, PER_WORKER to a worker thread;
 *   B. 256 worker threads with one peer each.
 * In each run a hub peer in this thread sends one message to every peer's node; every
 * peer answers on a handle to the hub's node and closes; the hub receives every answer;
 * then every worker exits by itself, the hub closes, and the bus closes. No wait in it
 * has a timeout of its own, and nothing may end early: a missing message or a worker
 * that exits before answering fails the run. Prints the time of each phase and memory.
 */

import { Worker } from 'node:worker_threads';
import { Bus, Peer, type PeerTicket } from '../src/index.js';
import type { ScaleWorkerData } from './scale-worker.js';

/** Small per-peer limits: a thousand peers with the defaults would reserve a lot of address space. */
const PEER_LIMITS = { messages: 64, handles: 64, bytes: 64 * 1024 };
const mib = (b: number) => (b / (1 << 20)).toFixed(0);

async function run(label: string, peers: number, perWorker: number): Promise<string> {
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss); }, 50);
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  const bus = await Bus.start({ peerLimits: PEER_LIMITS, maxMessageBytes: 4096 });
  // The hub holds a handle to every peer's node and gets every answer: room for all of them.
  const hubTicket = await bus.createPeer({ uid: 1, limits: { messages: 2048, handles: 2048, bytes: 1 << 20 } });
  const hubNode = await bus.createNode(hubTicket);
  const hub = Peer.open(hubTicket);
  const tickets: PeerTicket[] = [];
  const toPeer: number[] = [];
  let hubId = 0;
  for (let i = 0; i < peers; i++) {
    const t = await bus.createPeer({ uid: 100 + (i % 64) });
    const node = await bus.createNode(t);
    toPeer.push(await bus.transferHandle(t, node, hubTicket));
    const id = await bus.transferHandle(hubTicket, hubNode, t);
    if (hubId !== 0 && id !== hubId) throw new Error('hub ids differ between peers');
    hubId = id;
    tickets.push(t);
  }
  const workers: Worker[] = [];
  const exited: Promise<number>[] = [];
  const ready: Promise<void>[] = [];
  let failure: Error | null = null;
  for (let i = 0; i < peers; i += perWorker) {
    const mine = tickets.slice(i, i + perWorker);
    const data: ScaleWorkerData = { tickets: mine, hub: hubId };
    const w = new Worker(new URL('./scale-worker.js', import.meta.url), {
      workerData: data, transferList: mine.flatMap((t) => t.transfer) as never,
    });
    w.on('error', (e) => { failure ??= e; });
    workers.push(w);
    exited.push(new Promise((resolve) => w.once('exit', resolve)));
    ready.push(new Promise((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('exit', (code) => reject(new Error(`a worker exited (code ${code}) before it was ready`)));
    }));
  }
  await Promise.all(ready);
  const tAttached = performance.now();
  const rssAttached = process.memoryUsage().rss;

  await Promise.all(toPeer.map((h, i) => hub.send(h, `ping ${tickets[i].peerId}`)));
  const tSent = performance.now();
  const seen = new Set<number>();
  while (seen.size < peers) {
    const m = await hub.recv();
    // A peer that answered closes, and its node's destruction reaches the hub too.
    if (m.type === 'node-destroy') continue;
    if (m.type !== 'data') throw new Error(`hub: unexpected ${m.type}`);
    const id = Number(m.text().slice(5));
    if (seen.has(id)) throw new Error(`hub: pong ${id} twice`);
    seen.add(id);
    m.release();
  }
  const tReplied = performance.now();
  const codes = await Promise.all(exited);
  if (failure !== null) throw failure;
  const bad = codes.filter((c) => c !== 0).length;
  if (bad > 0) throw new Error(`${bad} workers exited with a non-zero code`);
  await hub.close();
  await bus.close();
  const tClosed = performance.now();
  clearInterval(sampler);
  const ms = (a: number, b: number) => (b - a).toFixed(0);
  return `| ${label} | ${peers} | ${workers.length} | ${ms(t0, tAttached)} | ${ms(tAttached, tSent)} | ${ms(tSent, tReplied)} | ${ms(tReplied, tClosed)} | ${ms(t0, tClosed)} | ${mib(rssBefore)} | ${mib(rssAttached)} | ${mib(peakRss)} |`;
}

const PER_WORKER = 50;
console.log('| run | peers | workers | attach ms | send ms | replies ms | close ms | total ms | RSS before MiB | RSS attached MiB | RSS peak MiB |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
console.log(await run(`A: ${PER_WORKER} peers per worker`, 1000, PER_WORKER));
console.log(await run('B: one peer per worker', 256, 1));
