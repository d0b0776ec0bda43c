// The cost of making, opening and closing many idle peers, as the idle-peer-memory
// workload makes them (its createIdle: createPeer and createNode for batches at once,
// each awaited; then Peer.open in this thread), phase by phase: wall time and the process's
// minor page faults (all threads: process.resourceUsage(), Linux). A page fault is the
// price of the first touch of a page of a peer's buffer, 20-25 us on the project's VM,
// so the faults say whether a phase reads or writes memory an idle peer never uses.
//
//   node dist/perf/create-peers.js [--peers 2000] [--rounds 3]
//
// Prints one JSON line per round, on one bus: the later rounds reuse what the first
// one grew (heap, mappings), as a long-lived owner would.

import { parseArgs } from 'node:util';
import { Bus, Peer } from '../src/index.js';
import { createIdle } from './systems/threadbus.js';

const { values } = parseArgs({ options: { peers: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '3' } } });
const peers = Number(values.peers);
const rounds = Number(values.rounds);
if (!(Number.isInteger(peers) && peers > 0 && Number.isInteger(rounds) && rounds > 0)) {
  console.error('usage: node dist/perf/create-peers.js [--peers N] [--rounds N]');
  process.exit(2);
}

const faults = (): number => process.resourceUsage().minorPageFault;

const bus = await Bus.start();
try {
  for (let r = 0; r < rounds; r++) {
    const f0 = faults();
    const t0 = performance.now();
    const tickets = await createIdle(bus, peers, (i) => r * peers + i);
    const f1 = faults();
    const t1 = performance.now();
    const opened = tickets.map((t) => Peer.open(t));
    const f2 = faults();
    const t2 = performance.now();
    await Promise.all(opened.map((p) => p.close()));
    const f3 = faults();
    const t3 = performance.now();
    const ms = (a: number, b: number): number => Math.round((b - a) * 10) / 10;
    console.log(JSON.stringify({
      round: r + 1, peers,
      createMs: ms(t0, t1), createFaults: f1 - f0,
      openMs: ms(t1, t2), openFaults: f2 - f1,
      closeMs: ms(t2, t3), closeFaults: f3 - f2,
    }));
  }
} finally {
  await bus.close();
}
