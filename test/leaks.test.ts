/*
 * Nothing leaks, ever (semantics.md 5.2): once every peer of a user has disconnected, by
 * close(), by worker.terminate(), or by its thread crashing, every counter of that user
 * is back at its maximum and no uid holds a share on it. The storms leave every kind of
 * charge behind at the moment of disconnection: messages queued and unread, messages
 * received and not released, handle references received and held, handles in flight in
 * queued messages, and requests still in the peers' rings.
 *
 * close() is answered by the coordinator after the disconnection, so its figures are
 * checked at once. A terminated or crashed thread is noticed when its port closes,
 * asynchronously, so those tests poll usage() (bounded) and then assert on what they read.
 */

import test, { type ExecutionContext } from 'ava';
import type { Usage } from '../src/index.js';
import { QBus, QuotaModel, atRest, cost, pollUntil, within, type QPeer } from './fixtures/quota-harness.js';

const LIMITS = { messages: 512, handles: 2048, bytes: 128 * 1024 };
const UIDS = [3001, 3002, 3003];
const READ_MODES = ['keep', 'release', 'none'] as const;
/** How long a thread's death may take to reach the coordinator. */
const NOTICE_MS = 20_000;

interface StormStats { sent: number; errors: Record<string, number>; received: number; heldRefs: number; batches: number }

/** Two peers per uid; every peer owns a node and holds a handle to every other peer's node. */
async function mesh(qb: QBus): Promise<Array<{ peer: QPeer; own: number; targets: number[] }>> {
  const peers: QPeer[] = [];
  for (const uid of UIDS) for (let i = 0; i < 2; i++) peers.push(await qb.peer(uid));
  const own = await Promise.all(peers.map((p) => p.createNode()));
  const targets: number[][] = peers.map(() => []);
  for (let o = 0; o < peers.length; o++) {
    for (let h = 0; h < peers.length; h++) {
      if (h !== o) targets[h].push(await qb.bus.transferHandle(peers[o].ticket, own[o], peers[h].ticket));
    }
  }
  return peers.map((peer, i) => ({ peer, own: own[i], targets: targets[i] }));
}

/** Start a storm in every peer (peer i reads as READ_MODES[i % 3]) and wait until it is well under way. */
async function storm(t: ExecutionContext, qb: QBus): Promise<QPeer[]> {
  const m = await mesh(qb);
  await Promise.all(m.map(({ peer, own, targets }, i) => peer.call('startStorm', {
    seed: 1000 + i, targets, attach: [own, ...targets], read: READ_MODES[i % 3], maxPayload: 300,
  })));
  await Promise.all(m.map(({ peer }) => peer.call('waitBatches', 3, 30_000)));
  // Preconditions: the storm really left each kind of charge behind somewhere.
  const keepers = m.filter((_, i) => READ_MODES[i % 3] === 'keep').map(({ peer }) => peer);
  const held = await pollUntil(15_000, () => Promise.all(keepers.map((p) => p.call<StormStats>('stormStats'))),
    (ss) => ss.some((s) => s.heldRefs > 0));
  t.true(held.some((s) => s.heldRefs > 0), 'some peer holds received handles');
  t.true(held.some((s) => s.received > 0), 'some peer received messages');
  const all: StormStats[] = await Promise.all(m.map(({ peer }) => peer.call('stormStats')));
  t.log(`storm so far: ${JSON.stringify(all.map((s, i) => ({ read: READ_MODES[i % 3], ...s })))}`);
  const usages = await Promise.all(UIDS.map((u) => qb.usage(u)));
  t.log(`usage before disconnecting: ${JSON.stringify(usages)}`);
  t.true(usages.some((u) => Object.keys(u.shares).length > 0), 'some messages are queued unread');
  t.true(usages.some((u) => u.remaining.messages < u.max.messages), 'some user is charged for messages');
  return m.map(({ peer }) => peer);
}

async function allUsages(qb: QBus, uids: number[]): Promise<Usage[]> {
  return Promise.all(uids.map((u) => qb.usage(u)));
}

function isAtRest(u: Usage): boolean {
  return JSON.stringify(u) === JSON.stringify(atRest(u.max));
}

async function expectAtRest(t: ExecutionContext, qb: QBus, uids: number[], poll: boolean): Promise<void> {
  const us = poll
    ? await pollUntil(NOTICE_MS, () => allUsages(qb, uids), (v) => v.every(isAtRest))
    : await allUsages(qb, uids);
  uids.forEach((uid, i) => t.deepEqual(us[i], atRest(LIMITS), `usage(${uid})`));
}

test('close gives back everything: queued messages, received-not-released messages and the handles they brought', async (t) => {
  const R = 3101, S = 3102;
  const qb = await QBus.start(t, { userLimits: LIMITS });
  const r = await qb.peer(R);
  const s = await qb.peer(S);
  const [, hR] = await qb.node(r, s);
  const sNode = await s.createNode();
  const c = cost(20, 2);
  for (let i = 0; i < 10; i++) await s.send(hR, { size: 20, handles: [sNode, sNode] });
  const kept = await r.recvMany(4, { keep: true });
  t.true(kept.every((k) => k.handles.length === 2));
  const m = new QuotaModel(R, LIMITS);
  m.chargeCommitted([0, 1, 0]);
  for (let i = 0; i < 10; i++) m.send(S, c);
  m.recv(4);
  t.deepEqual(await qb.usage(R), m.usage(), 'charged as expected before the close');
  t.notDeepEqual(m.usage(), atRest(LIMITS));

  await r.close();
  t.deepEqual(await qb.usage(R), atRest(LIMITS), 'the receiver\'s user, at once after close()');
  // The sender still holds its node and its handle to the receiver's (now destroyed) node.
  t.deepEqual(await qb.usage(S), { ...atRest(LIMITS), remaining: { ...LIMITS, handles: LIMITS.handles - 2 } });
  const err = await t.throwsAsync(s.send(hR, { text: 'late' }));
  t.is((err as { code?: string }).code, 'ESHUTDOWN');
  await s.close();
  t.deepEqual(await qb.usage(S), atRest(LIMITS));
});

test('after every peer closes in the middle of a storm, every user is back at its maximum with no shares', async (t) => {
  const qb = await QBus.start(t, { userLimits: LIMITS });
  const peers = await storm(t, qb);
  // Closed one by one while the others keep storming (and sending to the closed ones' nodes).
  for (const p of peers) await p.close();
  await expectAtRest(t, qb, UIDS, false);
});

test('after every peer\'s worker is terminated in the middle of a storm, every user is back at its maximum with no shares', async (t) => {
  const qb = await QBus.start(t, { userLimits: LIMITS });
  const peers = await storm(t, qb);
  await Promise.all(peers.map((p) => p.terminate()));
  await expectAtRest(t, qb, UIDS, true);
});

test('after every peer\'s thread crashes in the middle of a storm (uncaught throw, process.exit), every user is back at its maximum with no shares', async (t) => {
  const qb = await QBus.start(t, { userLimits: LIMITS });
  const peers = await storm(t, qb);
  peers.forEach((p, i) => p.crash(i % 2 === 0 ? 'throw' : 'exit'));
  const codes = await within(NOTICE_MS, Promise.all(peers.map((p) => p.exited)), 'the crashed workers exit');
  t.true(codes.every((c) => c !== 0), `exit codes ${codes.join(',')}`);
  await expectAtRest(t, qb, UIDS, true);
});

test('a user whose peers all died is back at its maximum while the other users are still storming, and the others are once they close', async (t) => {
  const qb = await QBus.start(t, { userLimits: LIMITS });
  const peers = await storm(t, qb);
  const [u1, u2, u3] = UIDS;
  const of = (uid: number) => peers.filter((p) => p.uid === uid);
  // u1: one crashes, one is terminated; the other four storm on (and keep sending to u1's dead nodes).
  of(u1)[0].crash('throw');
  await of(u1)[1].terminate();
  await within(NOTICE_MS, of(u1)[0].exited, 'the crashed worker exits');
  await expectAtRest(t, qb, [u1], true);
  const others = [...of(u2), ...of(u3)];
  const before: StormStats[] = await Promise.all(others.map((p) => p.call('stormStats')));
  await Promise.all(others.map((p, i) => p.call('waitBatches', before[i].batches + 2, 30_000)));
  t.deepEqual(await qb.usage(u1), atRest(LIMITS), 'u1 stays at rest while the others storm on');
  // u2 closes, u3 is terminated.
  for (const p of of(u2)) await p.close();
  await Promise.all(of(u3).map((p) => p.terminate()));
  await expectAtRest(t, qb, UIDS, true);
});
