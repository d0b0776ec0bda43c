/*
 * The coordinator polls only the peers whose bell rang (shared/layout.ts, Doorbell): an
 * idle peer is handed back to its bell after a few empty polls and costs nothing until
 * it publishes again. These tests check that nobody is forgotten on the way: peers that
 * went quiet (and a coordinator that went to sleep) are served when they speak again,
 * every one of hundreds of idle peers is served, bells rung by someone else, for peers
 * that do not exist or have closed, change nothing but cost a poll, and bells cleared
 * by someone else only delay their peer until the coordinator's next sweep.
 */

import test from 'ava';
import { Peer, type PeerTicket } from '../src/index.js';
import { BELL_MAP, BELL_COUNTER, MAX_BELLS } from '../shared/layout.js';
import { TestBus, within } from './helpers/remote-peer.js';

const IDLE_PEERS = 300;
/** Longer than the coordinator's warm stage (WARM_MS): it then sleeps through its event loop. */
const COLD_MS = 400;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function idlePeers(tb: TestBus, n: number, uidBase: number): Promise<Array<{ ticket: PeerTicket; peer: Peer }>> {
  const out: Array<{ ticket: PeerTicket; peer: Peer }> = [];
  for (let i = 0; i < n; i++) {
    const ticket = await tb.bus.createPeer({ uid: uidBase + i });
    out.push({ ticket, peer: Peer.open(ticket) });
  }
  return out;
}

test('among hundreds of idle peers, a pair is served before and after the coordinator goes to sleep, and each idle peer is served when it speaks', async (t) => {
  const tb = await TestBus.start(t);
  const a = await tb.peer(1);
  const b = await tb.peer(2);
  const [bNode, toB] = await tb.node(b, a);
  const idle = await idlePeers(tb, IDLE_PEERS, 1000);

  await a.send(toB, 'before');
  t.is((await within(5000, b.recv(), 'first message')).text, 'before');
  await sleep(COLD_MS);
  await a.send(toB, 'after');
  t.is((await within(5000, b.recv(), 'message after the bus went cold')).text, 'after');

  // Every idle peer, quiet until now, speaks once: a synchronous request, then a send.
  const handles: number[] = [];
  for (const { ticket, peer } of idle) {
    t.true(peer.createNode() > 0);
    handles.push(await tb.bus.transferHandle(b.ticket, bNode, ticket));
  }
  await sleep(COLD_MS);
  await within(10_000, Promise.all(idle.map(({ peer }, i) => peer.send(handles[i], `idle ${i}`))), 'sends of idle peers');
  const got = await within(10_000, b.recvMany(IDLE_PEERS), 'messages of idle peers');
  t.deepEqual(got.map((m) => m.text).sort(), idle.map((_, i) => `idle ${i}`).sort());
  t.deepEqual(new Set(got.map((m) => m.senderUid)).size, IDLE_PEERS);
});

test('bells rung by a stranger, for every bell there could be, closed peers included, cost only polls', async (t) => {
  const tb = await TestBus.start(t);
  const a = await tb.peer(1);
  const b = await tb.peer(2);
  const [, toB] = await tb.node(b, a);
  const gone = await idlePeers(tb, 40, 1000);
  for (const { peer } of gone.slice(0, 20)) await peer.close();
  const doorbell = new Int32Array(a.ticket.doorbell);
  let ringing = true;
  const ring = (async () => {
    while (ringing) {
      for (let w = 0; w < MAX_BELLS / 32; w++) Atomics.store(doorbell, BELL_MAP + w, -1);
      Atomics.add(doorbell, BELL_COUNTER, 1);
      Atomics.notify(doorbell, BELL_COUNTER);
      await sleep(1);
    }
  })();
  try {
    const sent = await a.sendMany(toB, 200, 'x');
    t.is(sent.ok, 200);
    t.is((await within(10_000, b.recvMany(200), 'messages under a storm of bells')).length, 200);
  } finally {
    ringing = false;
    await ring;
  }
  t.true(await a.isOpen());
  t.true(await b.isOpen());
  for (const { peer } of gone.slice(20)) t.true(peer.isOpen);
});

test('bells cleared by a stranger delay a peer but never strand it: the coordinator sweeps unpolled rings', async (t) => {
  const tb = await TestBus.start(t);
  const a = await tb.peer(1);
  const b = await tb.peer(2);
  const [, toB] = await tb.node(b, a);
  const doorbell = new Int32Array(a.ticket.doorbell);
  let clearing = true;
  const clear = (async () => {
    while (clearing) {
      for (let w = 0; w < 64; w++) Atomics.store(doorbell, BELL_MAP + w, 0);
      await new Promise((r) => setImmediate(r));
    }
  })();
  try {
    // Pauses between messages let both peers go idle and be handed back to their bells.
    for (let i = 0; i < 20; i++) {
      await within(10_000, a.send(toB, `m${i}`), `send ${i}`);
      t.is((await within(10_000, b.recv(), `message ${i}`)).text, `m${i}`);
      await sleep(15);
    }
  } finally {
    clearing = false;
    await clear;
  }
});
