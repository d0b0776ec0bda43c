/*
 * `npm run soak -- --minutes N [--interval S] [--clients C]`: a long mixed run that
 * must stay flat.
 *
 * SERVICES long-lived service peers, and up to C clients at a time that join, do mixed
 * traffic for 1-6 s (unicast, atomic multicast, requests with a reply handle, post()
 * bursts; perf/soak-worker.ts), and leave: by close() mostly, and by an uncaught throw,
 * process.exit() or terminate() now and then. New clients keep joining.
 *
 * Every interval (default 60 s) it prints one row: RSS of the process (every thread),
 * the owner's heap, pool bytes in use (bytes charged on every uid: queued and received,
 * unreleased messages), messages in flight (sent, not yet received, summed over every
 * receiving uid's shares), traffic and churn since the last row, and how many client
 * tickets the owner thread still holds (minted and not yet garbage-collected: a
 * FinalizationRegistry counts them; each keeps its peer's buffers mapped).
 *
 * "Flat" (the verdict at the end), after the first row (warm-up):
 *   - RSS: the last row is within 10% of the second row, and no row after the first is
 *     more than 25% above the second;
 *   - pool bytes and in-flight messages stay below what the quota allows (they move with
 *     the traffic, they cannot build up);
 *   - at the end, with every client gone and the services idle, every client uid is back
 *     at its maximum with no shares, and the services hold no message and no byte.
 * Exit code 0 when flat, 1 when not.
 */

import { Worker } from 'node:worker_threads';
import { Bus, type PeerTicket, type Usage } from '../src/index.js';
import type { SoakStats, SoakWorkerData } from './soak-worker.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

const MINUTES = arg('minutes', 10);
const INTERVAL_S = arg('interval', 60);
const CLIENTS = arg('clients', 6);
const SERVICES = 4;
const SERVICE_UID = 100;
const CLIENT_UIDS = 16;
const CLIENT_UID = 1000;
const ENDS = ['close', 'close', 'close', 'close', 'close', 'close', 'close', 'throw', 'exit', 'terminate'] as const;

const bus = await Bus.start({ userLimits: { messages: 4096, bytes: 8 << 20 }, maxMessageBytes: 64 * 1024 });
const traffic = { sent: 0, received: 0, replies: 0, refused: 0, joined: 0, left: 0, abnormal: 0 };
const live = new Set<Worker>();
let seed = 12345;
let ticketsMinted = 0;
let ticketsCollected = 0;
const tickets = new FinalizationRegistry<number>(() => { ticketsCollected++; });

function count(s: SoakStats): void {
  traffic.sent += s.sent;
  traffic.received += s.received;
  traffic.replies += s.replies;
  traffic.refused += s.refused;
}

function spawn(data: SoakWorkerData): Promise<Worker> {
  const w = new Worker(new URL('./soak-worker.js', import.meta.url), { workerData: data, transferList: data.ticket.transfer as never });
  live.add(w);
  w.on('message', (m: SoakStats | { type: 'ready' }) => {
    if (m.type === 'stats' || m.type === 'done') count(m);
    if (m.type === 'done' && data.end === 'terminate') void w.terminate();
  });
  w.on('error', (e) => {
    if (!/on purpose/.test(e.message)) {
      console.error(`worker error: ${e.stack ?? e.message}`);
      traffic.abnormal++;
    }
  });
  w.once('exit', () => {
    live.delete(w);
    if (data.role === 'client') traffic.left++;
  });
  return new Promise((resolve, reject) => {
    w.once('message', () => resolve(w));
    w.once('exit', () => reject(new Error(`${data.role} exited before it was ready`)));
  });
}

// Services.
const serviceTickets: PeerTicket[] = [];
const serviceNodes: number[] = [];
for (let i = 0; i < SERVICES; i++) {
  const ticket = await bus.createPeer({ uid: SERVICE_UID + i });
  serviceNodes.push(await bus.createNode(ticket));
  serviceTickets.push(ticket);
}
const services = await Promise.all(serviceTickets.map((ticket) => spawn({ ticket, role: 'service' })));

let clients = 0;
let stopping = false;
async function newClient(): Promise<void> {
  seed = (Math.imul(seed, 48271) + 1) >>> 0;
  const uid = CLIENT_UID + (traffic.joined % CLIENT_UIDS);
  const ticket = await bus.createPeer({ uid });
  ticketsMinted++;
  tickets.register(ticket, uid);
  const handles: number[] = [];
  for (let i = 0; i < SERVICES; i++) handles.push(await bus.transferHandle(serviceTickets[i], serviceNodes[i], ticket));
  traffic.joined++;
  clients++;
  const w = await spawn({
    ticket, role: 'client', services: handles, lifeMs: 1000 + (seed % 5000), end: ENDS[seed % ENDS.length], seed,
  });
  w.once('exit', () => {
    clients--;
    if (!stopping) void newClient().catch((e) => { console.error(e); traffic.abnormal++; });
  });
}
for (let i = 0; i < CLIENTS; i++) await newClient();

async function usages(uids: number[]): Promise<Usage[]> {
  return Promise.all(uids.map((u) => bus.usage(u)));
}
const allUids = [...Array.from({ length: SERVICES }, (_, i) => SERVICE_UID + i), ...Array.from({ length: CLIENT_UIDS }, (_, i) => CLIENT_UID + i)];

interface Row { minute: number; rssMiB: number; heapMiB: number; poolKiB: number; inFlight: number; msgsPerS: number; joined: number; left: number; live: number; ticketsHeld: number }
const rows: Row[] = [];
const mib = (b: number) => b / (1 << 20);
let last = { ...traffic };
const start = performance.now();
console.log(`soak: ${MINUTES} min, a row every ${INTERVAL_S} s, ${SERVICES} services, up to ${CLIENTS} clients at a time`);
console.log('| min | RSS MiB | owner heap MiB | pool KiB in use | in flight (msgs) | msgs/s | joined | left | live workers | tickets held |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
const rounds = Math.max(1, Math.round((MINUTES * 60) / INTERVAL_S));
for (let r = 1; r <= rounds; r++) {
  await new Promise((resolve) => setTimeout(resolve, start + r * INTERVAL_S * 1000 - performance.now()));
  const us = await usages(allUids);
  let pool = 0, inFlight = 0;
  for (const u of us) {
    pool += u.max.bytes - u.remaining.bytes;
    for (const s of Object.values(u.shares)) inFlight += s.messages;
  }
  const mem = process.memoryUsage();
  const row: Row = {
    minute: (r * INTERVAL_S) / 60, rssMiB: mib(mem.rss), heapMiB: mib(mem.heapUsed), poolKiB: pool / 1024, inFlight,
    msgsPerS: (traffic.received + traffic.replies - last.received - last.replies) / INTERVAL_S,
    joined: traffic.joined - last.joined, left: traffic.left - last.left, live: live.size,
    ticketsHeld: ticketsMinted - ticketsCollected,
  };
  last = { ...traffic };
  rows.push(row);
  console.log(`| ${row.minute.toFixed(1)} | ${row.rssMiB.toFixed(1)} | ${row.heapMiB.toFixed(1)} | ${row.poolKiB.toFixed(0)} | ${row.inFlight} | ${row.msgsPerS.toFixed(0)} | ${row.joined} | ${row.left} | ${row.live} | ${row.ticketsHeld} |`);
}

// Wind down: no new clients; wait for the last ones (bounded), then check the books.
stopping = true;
const windDown = performance.now() + 30_000;
while (clients > 0 && performance.now() < windDown) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, 500)); // the services drain what is left
const problems: string[] = [];
if (clients > 0) problems.push(`${clients} clients did not end within 30 s`);
for (const [i, u] of (await usages(allUids)).entries()) {
  const uid = allUids[i];
  if (Object.keys(u.shares).length > 0) problems.push(`uid ${uid} still has shares ${JSON.stringify(u.shares)}`);
  if (u.remaining.messages !== u.max.messages || u.remaining.bytes !== u.max.bytes) {
    problems.push(`uid ${uid} holds ${u.max.messages - u.remaining.messages} messages, ${u.max.bytes - u.remaining.bytes} bytes`);
  }
  const handles = u.max.handles - u.remaining.handles;
  if (handles !== (uid < CLIENT_UID ? 1 : 0)) problems.push(`uid ${uid} holds ${handles} handles`);
}
if (rows.length >= 2) {
  const base = rows[1].rssMiB;
  const end = rows[rows.length - 1].rssMiB;
  const peak = Math.max(...rows.slice(1).map((r) => r.rssMiB));
  console.log(`RSS: row 2 ${base.toFixed(1)} MiB, last ${end.toFixed(1)} MiB (${(100 * (end - base) / base).toFixed(1)}%), peak after warm-up ${peak.toFixed(1)} MiB (+${(100 * (peak - base) / base).toFixed(1)}%)`);
  if (Math.abs(end - base) > 0.1 * base) problems.push('RSS: the last row is more than 10% away from row 2');
  if (peak > 1.25 * base) problems.push('RSS: a row is more than 25% above row 2');
}
if (traffic.abnormal > 0) problems.push(`${traffic.abnormal} unexpected worker errors`);
console.log(`traffic: ${traffic.sent} sent, ${traffic.received} received by services, ${traffic.replies} replies received, ${traffic.refused} refused (EDQUOT/ESHUTDOWN), ${traffic.joined} clients joined, ${traffic.left} left`);
for (const s of services) await s.terminate();
await bus.close();
console.log(problems.length === 0 ? 'verdict: flat' : `verdict: NOT flat\n  ${problems.join('\n  ')}`);
process.exitCode = problems.length === 0 ? 0 : 1;
