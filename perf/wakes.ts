// Wake-ups per request/reply round trip: a client and a server worker on one bus, the
// client sending each request after the previous reply (64 B both ways), as the
// `reqrep` workload does. Prints the p50 and p90 round trip and, per round trip, the
// futex wakes of each thread (shared/wait.ts wakesSoFar; the coordinator's from the
// doorbell's BELL_WAKES word).
//
//   node dist/perf/wakes.js [trips] [runs]

import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import { Bus, Peer, type PeerTicket } from '../src/index.js';
import { BELL_WAKES } from '../shared/layout.js';
import { wakesSoFar } from '../shared/wait.js';
import { requestPair } from './pair.js';

interface Role { role: 'client' | 'server'; ticket: PeerTicket; to: number; trips: number; counts: Int32Array }
interface Done { wakes: number; p50?: number; p90?: number }

const WARMUP_TRIPS = 2000;
const BODY = new Uint8Array(64);

function once(w: Worker): Promise<Done> {
  return new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

async function run(trips: number): Promise<void> {
  const bus = await Bus.start({ maxMessageBytes: 2048 });
  try {
    const { client, server, toServer, toClient } = await requestPair(bus);
    const doorbell = new Int32Array(client.doorbell);
    // The server's wakesSoFar(), published after every reply: read at the client's start and end.
    const counts = new Int32Array(new SharedArrayBuffer(4));
    const spawn = (d: Role): Worker => new Worker(new URL(import.meta.url), { workerData: d, transferList: d.ticket.transfer as never });
    const s = spawn({ role: 'server', ticket: server, to: toClient, trips, counts });
    await once(s); // ready
    const c = spawn({ role: 'client', ticket: client, to: toServer, trips, counts });
    await once(c); // warmed up, measuring from now
    const k1 = Atomics.load(doorbell, BELL_WAKES);
    const s1 = Atomics.load(counts, 0);
    const done = await once(c);
    const k2 = Atomics.load(doorbell, BELL_WAKES);
    const sv = { wakes: Atomics.load(counts, 0) - s1 };
    s.postMessage('stop');
    const per = (n: number) => (n / trips).toFixed(2);
    console.log(`p50 ${done.p50!.toFixed(1)} us  p90 ${done.p90!.toFixed(1)} us  wakes per round trip: client ${per(done.wakes)}  server ${per(sv.wakes)}  coordinator ${per(k2 - k1)}  total ${per(done.wakes + sv.wakes + k2 - k1)}`);
    await Promise.all([c.terminate(), s.terminate()]);
  } finally {
    await bus.close();
  }
}

function serve(d: Role): void {
  const peer = Peer.open(d.ticket);
  let stop = false;
  parentPort!.on('message', () => { stop = true; });
  parentPort!.postMessage({ wakes: 0 });
  const slice = (): void => {
    for (let i = 0; i < 1000 && !stop; i++) {
      const m = peer.recvSync(5);
      if (m === undefined) break;
      m.release();
      peer.post(d.to, BODY);
      Atomics.store(d.counts, 0, wakesSoFar());
    }
    if (!stop) setImmediate(slice);
  };
  slice();
}

function drive(d: Role): void {
  const peer = Peer.open(d.ticket);
  const trip = (): void => {
    peer.post(d.to, BODY);
    let m = peer.recvSync(1000);
    while (m === undefined) m = peer.recvSync(1000);
    m.release();
  };
  for (let i = 0; i < WARMUP_TRIPS; i++) trip();
  const lat = new Float64Array(d.trips);
  parentPort!.postMessage({ wakes: 0 });
  const from = wakesSoFar();
  let t = performance.now();
  for (let i = 0; i < d.trips; i++) {
    trip();
    const now = performance.now();
    lat[i] = (now - t) * 1000;
    t = now;
  }
  const wakes = wakesSoFar() - from;
  lat.sort();
  parentPort!.postMessage({ wakes, p50: lat[d.trips >> 1], p90: lat[Math.floor(d.trips * 0.9)] });
}

if (isMainThread) {
  const trips = Number(process.argv[2] ?? 10000);
  const runs = Number(process.argv[3] ?? 3);
  for (let r = 0; r < runs; r++) await run(trips);
} else {
  const d = workerData as Role;
  if (d.role === 'server') serve(d);
  else drive(d);
}
