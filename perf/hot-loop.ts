// CPU time per message of the whole data path, measured in ONE thread: a sender's
// post(), the coordinator's runOnce(), the receivers' tryRecv() and release(), all
// driven in turn by this thread, so that the figure does not depend on how busy the
// other cores are (docs/performance.md, Where the gaps come from). Not a throughput
// benchmark: cross-thread costs (cache lines moving between cores, wake-ups) are absent.
//
//   node dist/perf/hot-loop.js [--bytes 64] [--dests 1] [--burst 16] [--seconds 2] [--reserve]
//
// --dests N posts each message to N receivers at once (one atomic multicast); the figure
// is then CPU per message and per delivery. --reserve produces each payload in place with
// reserve()/postReserved() instead of post() of a ready buffer.

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

let received = 0;
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

async function measure(seconds: number): Promise<{ nsPerMessage: number; messages: number }> {
  const r0 = received;
  const t0 = process.cpuUsage();
  const end = performance.now() + seconds * 1000;
  let rounds = 0;
  while (performance.now() < end) {
    for (let k = 0; k < 64; k++) round();
    rounds += 64;
    // Let the receivers' queued release batches go out (they flush in a microtask).
    await null;
  }
  const t = process.cpuUsage(t0);
  const cpuNs = (t.user + t.system) * 1000;
  const messages = rounds * BURST;
  if (received - r0 !== messages * DESTS) throw new Error(`lost messages: ${received - r0} of ${messages * DESTS}`);
  return { nsPerMessage: cpuNs / messages, messages };
}

await measure(Math.min(1, SECONDS / 2)); // warm-up: let V8 optimize
const runs: number[] = [];
for (let i = 0; i < 3; i++) runs.push((await measure(SECONDS / 3)).nsPerMessage);
runs.sort((a, b) => a - b);
const med = runs[1];
console.log(JSON.stringify({
  bytes: BYTES, dests: DESTS, burst: BURST, reserve: values.reserve,
  cpuNsPerMessage: Math.round(med), cpuNsPerDelivery: Math.round(med / DESTS), runs: runs.map(Math.round),
}));

process.exit(0);
