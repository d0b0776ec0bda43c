// CPU time per message of the whole data path, measured in ONE thread: a sender's
// post(), the coordinator's runOnce(), the receivers' tryRecv() and release(), all
// driven in turn by this thread, so that the figure does not depend on how busy the
// other cores are (docs/performance.md, Where the gaps come from). Not a throughput
// benchmark: cross-thread costs (cache lines moving between cores, wake-ups) are absent.
//
//   node dist/perf/hot-loop.js [--bytes 64] [--dests 1] [--burst 16] [--seconds 2] [--reserve | --send]
//
// --dests N posts each message to N receivers at once (one atomic multicast); the figure
// is then CPU per message and per delivery. --reserve produces each payload in place with
// reserve()/postReserved() instead of post() of a ready buffer. --send uses the plain
// `await send()` sender of the oneway-64B-send workload instead (perf/workers/threadbus.ts:
// SEND_WINDOW sends in flight, each awaited before its slot is reused); the figure
// `senderNsPerMessage` is then the CPU the sender's side alone spends per message (the
// whole loop minus the coordinator's and the receivers' part, timed apart).

import { parseArgs } from 'node:util';
import { inThreadBus } from './in-thread.js';
import type { Peer } from '../src/index.js';

const { values } = parseArgs({
  options: {
    bytes: { type: 'string', default: '64' },
    dests: { type: 'string', default: '1' },
    burst: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '2' },
    reserve: { type: 'boolean', default: false },
    send: { type: 'boolean', default: false },
  },
});
const BYTES = Number(values.bytes);
const DESTS = Number(values.dests);
const BURST = Number(values.burst);
const SECONDS = Number(values.seconds);

const bus = inThreadBus();
const { coordinator } = bus;
const limits = { messages: 4096, bytes: 64 << 20 };
const { peer: sender, id: senderId } = bus.open(1, limits);
const receivers: Peer[] = [];
const to: number[] = [];
for (let i = 0; i < DESTS; i++) {
  const r = bus.open(2 + i, limits);
  receivers.push(r.peer);
  to.push(bus.handleTo(r.id, senderId));
}
const dest: number | number[] = DESTS === 1 ? to[0] : to;
const payload = new Uint8Array(BYTES).fill(7);

/** The plain sender's window (as in perf/workers/threadbus.ts). */
const SEND_WINDOW = 1024;
const window: Array<Promise<void> | undefined> = new Array(SEND_WINDOW);
let slot = 0;
const sendOne = async (): Promise<void> => {
  await sender.send(dest, payload);
};

let received = 0;
/** Time spent in the coordinator and the receivers (ms), to tell the sender's part apart. */
let othersMs = 0;
async function sendRound(): Promise<void> {
  for (let i = 0; i < BURST; i++) {
    await window[slot];
    payload[0] = i;
    window[slot] = sendOne();
    slot = (slot + 1) % SEND_WINDOW;
  }
  const t0 = performance.now();
  drive();
  othersMs += performance.now() - t0;
}

function round(): void {
  for (let i = 0; i < BURST; i++) {
    if (values.reserve) {
      const view = sender.reserve(dest as number, BYTES);
      view[0] = i;
      sender.postReserved();
    } else {
      payload[0] = i;
      sender.post(dest, payload);
    }
  }
  drive();
}

function drive(): void {
  coordinator.runOnce();
  for (const r of receivers) {
    for (let m = r.tryRecv(); m !== undefined; m = r.tryRecv()) {
      received++;
      m.release();
    }
  }
  // The releases reach the coordinator with the receivers' next requests: run it for them.
  coordinator.runOnce();
}

async function measure(seconds: number): Promise<{ nsPerMessage: number; senderNs: number; messages: number }> {
  const r0 = received;
  const o0 = othersMs;
  const t0 = process.cpuUsage();
  const end = performance.now() + seconds * 1000;
  let rounds = 0;
  while (performance.now() < end) {
    if (values.send) for (let k = 0; k < 64; k++) await sendRound();
    else for (let k = 0; k < 64; k++) round();
    rounds += 64;
    // Let the receivers' queued release batches go out (they flush in a microtask).
    await null;
  }
  const t = process.cpuUsage(t0);
  const cpuNs = (t.user + t.system) * 1000;
  const messages = rounds * BURST;
  // The sends of the last window may not have reached the receivers yet.
  const lost = messages * DESTS - (received - r0);
  if (lost < 0 || lost > (values.send ? SEND_WINDOW * DESTS : 0)) throw new Error(`lost messages: ${received - r0} of ${messages * DESTS}`);
  return { nsPerMessage: cpuNs / messages, senderNs: (cpuNs - (othersMs - o0) * 1e6) / messages, messages };
}

await measure(Math.min(1, SECONDS / 2)); // warm-up: let V8 optimize
const measured: Array<{ nsPerMessage: number; senderNs: number }> = [];
for (let i = 0; i < 3; i++) measured.push(await measure(SECONDS / 3));
measured.sort((a, b) => a.nsPerMessage - b.nsPerMessage);
const med = measured[1].nsPerMessage;
console.log(JSON.stringify({
  bytes: BYTES, dests: DESTS, burst: BURST, reserve: values.reserve, send: values.send,
  cpuNsPerMessage: Math.round(med), cpuNsPerDelivery: Math.round(med / DESTS),
  ...(values.send ? { senderNsPerMessage: Math.round(measured[1].senderNs) } : {}),
  runs: measured.map((m) => Math.round(m.nsPerMessage)),
}));

process.exit(0);
