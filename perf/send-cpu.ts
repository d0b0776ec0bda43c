// CPU time per message of each thread of the plain `await send()` workload, across real
// threads: a sender worker with SEND_WINDOW sends in flight (each awaited before its slot
// is reused, EDQUOT retried after 1 ms, as perf/workers/threadbus.ts plainSender does) to
// a receiver worker in recvSync(). Each thread's CPU comes from the kernel
// (/proc/self/task/<tid>/schedstat, Linux only), so the figures hold on a loaded machine
// where wall-clock rates do not; the rate is printed too, for what it is worth there.
//
//   node dist/perf/send-cpu.js [--seconds 2] [--runs 3]
//
// Prints one JSON line per run: msgs/s, and ns of CPU per message of the sender, the
// coordinator (the busiest other thread), the receiver, and the rest of the process
// (V8's helper threads: mostly parallel garbage collection), then the medians.

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { Bus, Peer, type PeerTicket } from '../src/index.js';
import { allThreadTimes, ownTid, threadCpuNs } from './thread-times.js';

const SEND_WINDOW = 1024;
const BACKOFF_MS = 1;
const PAYLOAD_BYTES = 64;
/** ctl words: STOP (1: sender stops, 2: receiver may stop once drained), RECEIVED. */
const STOP = 0, RECEIVED = 1;

interface RoleData { role: 'send' | 'recv'; ticket: PeerTicket; ctl: Int32Array; to: number }
interface RoleResult { n: number; cpuNs: number }

async function role(d: RoleData): Promise<void> {
  const peer = Peer.open(d.ticket);
  const tid = ownTid();
  parentPort!.postMessage({ tid });
  await new Promise((r) => parentPort!.once('message', r));
  const ctl = d.ctl;
  let n = 0;
  const c0 = threadCpuNs('thread-self');
  if (d.role === 'send') {
    const window: Array<Promise<void> | undefined> = new Array(SEND_WINDOW);
    const msg = new Uint8Array(PAYLOAD_BYTES).fill(7);
    let failure: unknown = null;
    const sendOne = async (seq: number): Promise<void> => {
      for (;;) {
        msg[0] = seq;
        try {
          await peer.send(d.to, msg);
          n++;
          return;
        } catch (e) {
          if ((e as { code?: string }).code !== 'EDQUOT') throw e;
          await new Promise((r) => setTimeout(r, BACKOFF_MS));
        }
      }
    };
    for (let i = 0, seq = 0; Atomics.load(ctl, STOP) === 0 && failure === null; i = (i + 1) % SEND_WINDOW, seq++) {
      await window[i];
      window[i] = sendOne(seq).catch((e: unknown) => void (failure ??= e));
    }
    await Promise.all(window);
    if (failure !== null) throw failure;
  } else {
    for (;;) {
      const m = peer.recvSync(5);
      if (m !== undefined) {
        n++;
        m.release();
        Atomics.store(ctl, RECEIVED, n);
      } else if (Atomics.load(ctl, STOP) === 2) {
        break;
      }
    }
  }
  parentPort!.postMessage({ n, cpuNs: threadCpuNs('thread-self') - c0 } satisfies RoleResult);
  await peer.close();
}

function next<T>(w: Worker): Promise<T> {
  return new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

async function run(seconds: number): Promise<Record<string, number>> {
  const bus = await Bus.start({ userLimits: { messages: 1 << 18 }, maxMessageBytes: 2048 });
  try {
    const receiver = await bus.createPeer({ uid: 100_000 });
    const node = await bus.createNode(receiver);
    const sender = await bus.createPeer({ uid: 1, limits: { messages: 64, handles: 64, bytes: 65536 } });
    const to = await bus.transferHandle(receiver, node, sender);
    const ctl = new Int32Array(new SharedArrayBuffer(8));
    const start = (r: 'send' | 'recv', ticket: PeerTicket) =>
      new Worker(new URL(import.meta.url), { workerData: { role: r, ticket, ctl, to } satisfies RoleData, transferList: ticket.transfer });
    const r = start('recv', receiver), s = start('send', sender);
    try {
      const [rt, st] = await Promise.all([next<{ tid: number }>(r), next<{ tid: number }>(s)]);
      const before = allThreadTimes();
      const t0 = performance.now();
      r.postMessage('go');
      s.postMessage('go');
      await new Promise((res) => setTimeout(res, seconds * 1000));
      Atomics.store(ctl, STOP, 1);
      const sent = await next<RoleResult>(s);
      const after = allThreadTimes();
      const elapsed = performance.now() - t0;
      const deadline = performance.now() + 10_000;
      while (Atomics.load(ctl, RECEIVED) < sent.n) {
        if (performance.now() > deadline) throw new Error(`received ${Atomics.load(ctl, RECEIVED)} of ${sent.n}`);
        await new Promise((res) => setTimeout(res, 5));
      }
      const done = next<RoleResult>(r);
      Atomics.store(ctl, STOP, 2);
      const got = await done;
      const others = [...after]
        .filter(([tid]) => tid !== rt.tid && tid !== st.tid)
        .map(([tid, t]) => t.cpuNs - (before.get(tid)?.cpuNs ?? 0))
        .sort((a, b) => b - a);
      const n = sent.n;
      return {
        msgsPerSec: Math.round((n / elapsed) * 1000),
        senderNs: Math.round(sent.cpuNs / n),
        coordinatorNs: Math.round(others[0]! / n),
        receiverNs: Math.round(got.cpuNs / got.n),
        restNs: Math.round(others.slice(1).reduce((a, b) => a + b, 0) / n),
      };
    } finally {
      await Promise.all([s.terminate(), r.terminate()]);
    }
  } finally {
    await bus.close();
  }
}

if (isMainThread) {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' }, runs: { type: 'string', default: '3' } } });
  const results: Array<Record<string, number>> = [];
  for (let i = 0; i < Number(values.runs); i++) {
    const r = await run(Number(values.seconds));
    console.log(JSON.stringify(r));
    results.push(r);
  }
  const median = (k: string) => results.map((r) => r[k]!).sort((a, b) => a - b)[results.length >> 1]!;
  console.log(JSON.stringify({ median: Object.fromEntries(Object.keys(results[0]!).map((k) => [k, median(k)])) }));
} else {
  await role(workerData as RoleData);
}
