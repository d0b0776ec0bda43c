/*
 * Crash storm (issue 10, point 5): while traffic flows, victim peers die by terminate(),
 * an uncaught throw and process.exit(), at random moments. Three stable peers stay up the
 * whole time, sending to each other and to the victims, and the victims send to them.
 * After each round (traffic paused, every victim gone):
 *   - every uid is back at its maximum (bus.usage): nothing queued or held anywhere, no
 *     shares; a stable peer's only charge is one handle per node it owns or holds of the
 *     other stable peers;
 *   - no surviving peer lost or duplicated a message: between stable peers every resolved
 *     send arrived exactly once, in order; from a victim, a stable peer got 0, 1, 2, ...
 *     with no gap and no repeat (a prefix: what the victim had sent before it died).
 * Seeded (STORM_SEED) so that a failure reproduces; the timing of deaths still varies.
 */

import test from 'ava';
import { Worker } from 'node:worker_threads';
import { Bus, type PeerTicket } from '../src/index.js';
import { RpcClient } from './helpers/rpc-client.js';
import { within } from './helpers/remote-peer.js';
import type { StormStats } from './fixtures/storm-peer.js';

const SEED = Number(process.env.STORM_SEED ?? 0x5707) >>> 0;
const ROUNDS = 6;
const STABLE = 3;
const VICTIMS = 5;
const WAIT = 15_000; // hang guard only
const STABLE_UID = 300;
const VICTIM_UID = 700;
const HOWS = ['terminate', 'throw', 'exit'] as const;

class StormPeer extends RpcClient {
  constructor(worker: Worker, readonly ticket: PeerTicket, readonly tag: string) {
    super(worker, false); // deaths are provoked on purpose; `exited` tells
  }

  static async spawn(bus: Bus, uid: number, tag: string): Promise<{ peer: StormPeer; node: number }> {
    const ticket = await bus.createPeer({ uid });
    const node = await bus.createNode(ticket);
    const worker = new Worker(new URL('./fixtures/storm-peer.js', import.meta.url), {
      workerData: { ticket, tag }, transferList: ticket.transfer as never,
    });
    const p = new StormPeer(worker, ticket, tag);
    await p.ready();
    return { peer: p, node };
  }

  stats(): Promise<StormStats> { return this.call('stats'); }
}

function rng(seed: number): () => number {
  let x = seed || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

test('crash storm: victims die by terminate, throw and exit under traffic; nothing leaks, survivors lose and repeat nothing', async (t) => {
  const bus = await Bus.start({ userLimits: { messages: 512, bytes: 1 << 20 }, maxMessageBytes: 1024 });
  const all: StormPeer[] = [];
  t.teardown(async () => {
    await Promise.all(all.map((p) => p.worker.terminate()));
    await bus.close().catch(() => undefined);
  });
  const r = rng(SEED);
  const stable: Array<{ peer: StormPeer; node: number }> = [];
  for (let i = 0; i < STABLE; i++) stable.push(await StormPeer.spawn(bus, STABLE_UID + i, `s${i}`));
  all.push(...stable.map((s) => s.peer));
  // Every stable peer sends to every other one.
  for (const [i, s] of stable.entries()) {
    const list: Array<[string, number]> = [];
    for (const [j, o] of stable.entries()) {
      if (j !== i) list.push([`s${j}`, await bus.transferHandle(o.peer.ticket, o.node, s.peer.ticket)]);
    }
    await s.peer.call('addDests', list);
    await s.peer.call('start');
  }

  const deaths: Record<string, number> = { terminate: 0, throw: 0, exit: 0 };
  let fromVictims = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const victims: Array<{ peer: StormPeer; node: number; how: (typeof HOWS)[number]; at: number }> = [];
    for (let i = 0; i < VICTIMS; i++) {
      const v = await StormPeer.spawn(bus, VICTIM_UID + i, `r${round}v${i}`);
      all.push(v.peer);
      victims.push({ ...v, how: HOWS[r() % HOWS.length], at: r() % 250 });
    }
    // Victims send to every stable peer; stable peers send to every victim.
    for (const v of victims) {
      const list: Array<[string, number]> = [];
      for (const [j, s] of stable.entries()) {
        list.push([`s${j}`, await bus.transferHandle(s.peer.ticket, s.node, v.peer.ticket)]);
        await s.peer.call('addDests', [[v.peer.tag, await bus.transferHandle(v.peer.ticket, v.node, s.peer.ticket)]]);
      }
      await v.peer.call('addDests', list);
      await v.peer.call('start');
    }
    // Deaths at random moments while everything flows.
    await Promise.all(victims.map(async (v) => {
      await new Promise((resolve) => setTimeout(resolve, v.at));
      deaths[v.how]++;
      if (v.how === 'terminate') await v.peer.worker.terminate();
      else void v.peer.call('crash', v.how).catch(() => undefined);
      await within(WAIT, v.peer.exited, `round ${round}: ${v.peer.tag} (${v.how}) exits`);
    }));

    // Quiesce: stop the stable senders, then wait until every stable peer has received
    // everything the others sent it and released its handles to the dead victims' nodes.
    for (const s of stable) await within(WAIT, s.peer.call('pause'), `round ${round}: pause ${s.peer.tag}`);
    const settled = async (): Promise<StormStats[]> => {
      const deadline = performance.now() + WAIT;
      for (;;) {
        const st = await Promise.all(stable.map((s) => s.peer.stats()));
        const caughtUp = st.every((rx, i) => stable.every((_, j) => j === i || (rx.received[`s${j}`] ?? 0) === (st[j].sent[`s${i}`] ?? 0)));
        const us = await Promise.all(stable.map((_, i) => bus.usage(STABLE_UID + i)));
        const released = us.every((u) => u.max.handles - u.remaining.handles === STABLE && u.remaining.messages === u.max.messages);
        if (caughtUp && released) return st;
        if (performance.now() > deadline) {
          t.fail(`round ${round}: not settled: ${JSON.stringify(st.map((x) => ({ sent: x.sent, received: x.received })))} ${JSON.stringify(us.map((u) => u.remaining))}`);
          return st;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    const st = await settled();
    for (const [i, rx] of st.entries()) {
      t.deepEqual(rx.anomalies, [], `round ${round}: s${i} saw every sender's numbers in order, without gaps or repeats`);
      t.deepEqual(rx.errors, [], `round ${round}: s${i} had no unexpected error`);
      for (const [j] of stable.entries()) {
        if (j !== i) t.is(rx.received[`s${j}`] ?? 0, st[j].sent[`s${i}`] ?? 0, `round ${round}: s${i} got every message s${j} sent it, once`);
      }
      for (const v of victims) fromVictims += rx.received[v.peer.tag] ?? 0;
    }
    // Every uid back at its maximum.
    for (let i = 0; i < VICTIMS; i++) {
      const u = await bus.usage(VICTIM_UID + i);
      t.deepEqual(u.remaining, u.max, `round ${round}: victim uid ${VICTIM_UID + i} back at its maximum`);
      t.deepEqual(u.shares, {}, `round ${round}: victim uid ${VICTIM_UID + i} has no shares`);
    }
    for (let i = 0; i < STABLE; i++) {
      const u = await bus.usage(STABLE_UID + i);
      t.deepEqual(u.remaining, { ...u.max, handles: u.max.handles - STABLE },
        `round ${round}: stable uid ${STABLE_UID + i} holds only its node and its handles to the other stable nodes`);
      t.deepEqual(u.shares, {}, `round ${round}: stable uid ${STABLE_UID + i} has no shares`);
    }
    for (const s of stable) await s.peer.call('start');
  }
  const final = await Promise.all(stable.map((s) => s.peer.stats()));
  const between = final.reduce((n, s) => n + Object.entries(s.received).filter(([k]) => k.startsWith('s')).reduce((m, [, c]) => m + c, 0), 0);
  t.log(`seed ${SEED}: ${ROUNDS} rounds, deaths ${JSON.stringify(deaths)}; ${between} messages between stable peers, ${fromVictims} from victims, every one checked`);
  t.true(between > 0 && fromVictims > 0, 'traffic flowed');
});
