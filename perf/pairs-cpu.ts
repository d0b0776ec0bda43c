// CPU time and context switches per message of each kind of thread in a steady stream of
// PAIRS sender -> receiver pairs through one bus (pairs-64 is 64): each sender a worker
// that post()s --bytes-byte messages (64) and flush()es every --window posts, each receiver a worker
// in tryRecv()/recvSync(), as perf/workers/threadbus.ts does. Each thread's CPU comes from
// the kernel (/proc/self/task/<tid>/schedstat) and its voluntary and involuntary context
// switches from /proc/self/task/<tid>/status (Linux only), over a window that starts
// --warmup seconds after the last worker started. Each sender starts as soon as it is
// made, so the first ones have run for the whole setup (tens of seconds under load): 129
// isolates compile their hot paths for long (docs/performance.md, section 6), and senders
// that all start at once measure several times their steady CPU per message after 20 s.
// A voluntary switch is a sleep (a futex wait, most of them), so switches per 1000
// messages say how often each side slept.
//
//   node dist/perf/pairs-cpu.js [--pairs 64] [--window 1024] [--warmup 3] [--seconds 2] [--bytes 64]
//
// With --pairs 1 it is the one-way stream of oneway-64B, oneway-1KiB (--bytes 1024) or
// oneway-64KiB (--bytes 65536), with the bus the benchmark gives those (perf/systems/threadbus.ts).
//
// Prints one JSON line: msgs/s, then per kind (sender, receiver, coordinator) ns of CPU
// per message and switches per 1000 messages, summed over the threads of that kind.

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { Peer, type PeerTicket } from '../src/index.js';
import { allThreadTimes, ownTid, type ThreadTimes } from './thread-times.js';

/** ctl words: STOP, then one received count per pair. */
const STOP = 0, COUNTS = 1;

interface RoleData { role: 'send' | 'recv'; ticket: PeerTicket; ctl: Int32Array; to: number; index: number; window: number; bytes: number }

async function role(d: RoleData): Promise<void> {
  const peer = Peer.open(d.ticket);
  parentPort!.postMessage({ tid: ownTid() });
  const ctl = d.ctl;
  if (d.role === 'send') {
    const msg = new Uint8Array(d.bytes).fill(7);
    while (Atomics.load(ctl, STOP) === 0) {
      for (let k = 0; k < d.window; k++) peer.post(d.to, msg);
      const { rejected } = await peer.flush();
      for (const r of rejected) {
        if (r.error.code !== 'EDQUOT') throw new Error(`post refused: ${r.error.code} ${r.error.message}`);
      }
      if (rejected.length > 0) await new Promise((r) => setTimeout(r, 1));
    }
  } else {
    let n = 0;
    const at = COUNTS + d.index;
    while (Atomics.load(ctl, STOP) === 0) {
      let m = peer.tryRecv();
      while (m !== undefined) {
        m.release();
        if ((++n & 255) === 0) Atomics.store(ctl, at, n);
        m = peer.tryRecv();
      }
      Atomics.store(ctl, at, n);
      m = peer.recvSync(5);
      if (m !== undefined) {
        m.release();
        n++;
      }
    }
  }
  await peer.close();
}

function next<T>(w: Worker): Promise<T> {
  return new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

function sum(tids: readonly number[], before: Map<number, ThreadTimes>, after: Map<number, ThreadTimes>): ThreadTimes {
  const s = { cpuNs: 0, voluntary: 0, involuntary: 0 };
  for (const t of tids) {
    const a = before.get(t), b = after.get(t);
    if (a === undefined || b === undefined) continue;
    s.cpuNs += b.cpuNs - a.cpuNs;
    s.voluntary += b.voluntary - a.voluntary;
    s.involuntary += b.involuntary - a.involuntary;
  }
  return s;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      pairs: { type: 'string', default: '64' }, window: { type: 'string', default: '1024' },
      warmup: { type: 'string', default: '3' }, seconds: { type: 'string', default: '2' },
      bytes: { type: 'string', default: '64' },
    },
  });
  const pairs = Number(values.pairs), window = Number(values.window);
  const warmup = Number(values.warmup), seconds = Number(values.seconds), bytes = Number(values.bytes);
  if (!(Number.isInteger(pairs) && pairs > 0 && Number.isInteger(window) && window > 0 && warmup >= 0 && seconds > 0
    && Number.isInteger(bytes) && bytes >= 0 && bytes <= 65536)) {
    console.error('usage: node dist/perf/pairs-cpu.js [--pairs N] [--window N] [--warmup S] [--seconds S] [--bytes 0..65536]');
    process.exit(2);
  }
  // The benchmark's bus for this payload size; imported here, so that the workers do not load the benchmark.
  const { startBus, SENDER_LIMITS } = await import('./systems/threadbus.js');
  const bus = await startBus(bytes);
  const ctl = new Int32Array(new SharedArrayBuffer(4 * (COUNTS + pairs)));
  const workers: Worker[] = [];
  const tids = { send: [] as number[], recv: [] as number[] };
  try {
    for (let i = 0; i < pairs; i++) {
      const receiver = await bus.createPeer({ uid: 100_000 + i });
      const node = await bus.createNode(receiver);
      const sender = await bus.createPeer({ uid: 1 + i, limits: SENDER_LIMITS });
      const to = await bus.transferHandle(receiver, node, sender);
      for (const [r, ticket] of [['recv', receiver], ['send', sender]] as const) {
        const w = new Worker(new URL(import.meta.url), {
          workerData: { role: r, ticket, ctl, to, index: i, window, bytes } satisfies RoleData, transferList: ticket.transfer,
        });
        workers.push(w);
        tids[r].push((await next<{ tid: number }>(w)).tid);
      }
    }
    await new Promise((r) => setTimeout(r, warmup * 1000));
    const received = (): number => {
      let n = 0;
      for (let i = 0; i < pairs; i++) n += Atomics.load(ctl, COUNTS + i);
      return n;
    };
    const before = allThreadTimes();
    const n0 = received();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const after = allThreadTimes();
    const n = received() - n0;
    const elapsed = performance.now() - t0;
    const peers = new Set([...tids.send, ...tids.recv, process.pid]);
    // The coordinator: the busiest thread that is neither a peer nor this one.
    const others = [...after.keys()].filter((t) => !peers.has(t))
      .sort((a, b) => sum([b], before, after).cpuNs - sum([a], before, after).cpuNs);
    const per = (s: ThreadTimes) => ({
      cpuNsPerMsg: Math.round(s.cpuNs / n),
      voluntaryPer1k: Math.round((s.voluntary / n) * 10_000) / 10,
      involuntaryPer1k: Math.round((s.involuntary / n) * 10_000) / 10,
    });
    console.log(JSON.stringify({
      pairs, window, bytes, msgsPerSec: Math.round((n / elapsed) * 1000),
      sender: per(sum(tids.send, before, after)),
      receiver: per(sum(tids.recv, before, after)),
      coordinator: per(sum(others.slice(0, 1), before, after)),
    }));
  } finally {
    Atomics.store(ctl, STOP, 1);
    await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
    await bus.close();
  }
}

if (isMainThread) await main();
else await role(workerData as RoleData);
