/*
 * Settling send() promises (src/peer/acks.ts): the coordinator acknowledges a peer's
 * requests with one word (CTL_ACKED) plus a verdict record for each failure, and the peer
 * settles everything up to that word in one pass. A worker cannot make the coordinator find
 * a known set of records at once, so this drives a coordinator and its peers in this thread
 * (perf/in-thread.ts): every send is in the ring before the coordinator looks, and all of
 * them are settled by the same pass.
 */

import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { BusError, type SendReport } from '../src/index.js';
import { inThreadBus } from '../perf/in-thread.js';

test('sends settled in one pass, with refusals and a partial multicast in the middle, each get their own outcome, in send order', async (t) => {
  // uid 3 holds 8 messages: the sending uid gets only part of them, the rest of its sends to B are EDQUOT.
  const bus = inThreadBus({ 3: { messages: 8 } }, { messages: 256, handles: 256, bytes: 1 << 20 });
  t.teardown(() => bus.coordinator.closeAll());
  const s = bus.open(1), a = bus.open(2), b = bus.open(3);
  const toA = bus.handleTo(a.id, s.id), toB = bus.handleTo(b.id, s.id);
  const unknown = Math.max(toA, toB) + 100; // a handle id the sender does not hold: ENXIO

  const sends: Array<{ what: string; p: Promise<void | SendReport> }> = [];
  for (let i = 0; i < 12; i++) {
    sends.push({ what: 'a', p: s.peer.send(toA, `a${i}`) });
    sends.push({ what: 'b', p: s.peer.send(toB, `b${i}`) });
    if (i === 5) {
      sends.push({ what: 'partial', p: s.peer.send([toA, toB], 'p', { partial: true }) });
      sends.push({ what: 'unknown', p: s.peer.send(unknown, 'u') });
    }
  }
  const order: number[] = [];
  sends.forEach(({ p }, i) => void p.then(() => order.push(i), () => order.push(i)));
  for (let i = 0; i < 4; i++) bus.coordinator.runOnce();
  const results = await Promise.race([
    Promise.allSettled(sends.map((x) => x.p)),
    sleep(10_000).then(() => { throw new Error('a send() did not settle'); }),
  ]);
  await null;

  t.deepEqual(order, sends.map((_, i) => i), 'promises settle in the order the sends were made');
  const outcome = results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as BusError).code));
  const at = (what: string) => outcome.filter((_, i) => sends[i]!.what === what);
  t.true(at('a').every((o) => o === 'ok'), `every send to A succeeds: ${at('a').join(' ')}`);
  // B's sends: a run of successes, then nothing but EDQUOT (the quota does not come back meanwhile).
  const bOk = at('b').indexOf('EDQUOT');
  t.true(bOk > 0, `some sends to B succeed before the quota ends: ${at('b').join(' ')}`);
  t.deepEqual(at('b').slice(bOk), at('b').slice(bOk).map(() => 'EDQUOT'), `then every send to B is EDQUOT: ${at('b').join(' ')}`);
  t.deepEqual(at('unknown'), ['ENXIO']);
  const unknownErr = (results[sends.findIndex((x) => x.what === 'unknown')] as PromiseRejectedResult).reason as BusError;
  t.true(unknownErr instanceof BusError);

  // The partial multicast came after B's quota ended (6 sends to B before it): A delivered, B refused.
  const report = (results[sends.findIndex((x) => x.what === 'partial')] as PromiseFulfilledResult<SendReport>).value;
  t.true(bOk <= 6, `B's quota ends before the partial multicast (${bOk} sends to B admitted)`);
  t.deepEqual(report.delivered, [toA]);
  t.deepEqual(report.refused.map((r) => [r.destination, r.error.code]), [[toB, 'EDQUOT']]);

  // What arrived is exactly what succeeded, in send order.
  const texts = (peer: typeof s.peer) => {
    const got: string[] = [];
    for (let m = peer.tryRecv(); m !== undefined; m = peer.tryRecv()) got.push(m.text());
    return got;
  };
  const wantA = sends.flatMap((x, i) => (x.what === 'a' ? [`a${sends.slice(0, i).filter((y) => y.what === 'a').length}`] : x.what === 'partial' ? ['p'] : []));
  t.deepEqual(texts(a.peer), wantA);
  t.deepEqual(texts(b.peer), Array.from({ length: bOk }, (_, i) => `b${i}`));
});

test('a sender that keeps sending without yielding to the event loop sees its acknowledged sends settle, refusals included, in order', async (t) => {
  // uid 3 holds 8 messages: part of the sends to B are refused (EDQUOT) in the middle of the stream.
  const bus = inThreadBus({ 3: { messages: 8 } }, { messages: 1024, handles: 256, bytes: 1 << 20 });
  t.teardown(() => bus.coordinator.closeAll());
  const s = bus.open(1), a = bus.open(2), b = bus.open(3);
  const toA = bus.handleTo(a.id, s.id), toB = bus.handleTo(b.id, s.id);

  const SENDS = 256, BATCH = 16;
  const outcome: string[] = new Array<string>(SENDS).fill('pending');
  const order: number[] = [];
  const sends: Array<Promise<void>> = [];
  for (let i = 0; i < SENDS; i++) {
    const p = s.peer.send(i % 2 === 0 ? toA : toB, `m${i}`);
    void p.then(() => { outcome[i] = 'ok'; order.push(i); }, (e: BusError) => { outcome[i] = e.code; order.push(i); });
    sends.push(p);
    // The coordinator acknowledges each batch but the last while the sender goes on sending.
    if ((i + 1) % BATCH === 0 && i + 1 < SENDS) bus.coordinator.runOnce();
  }
  // Microtasks only: no timer, no immediate, no event-loop turn.
  for (let i = 0; i < 20; i++) await null;
  const early = outcome.filter((o) => o !== 'pending').length;
  t.true(early >= SENDS - 64, `sends acknowledged while the user was sending are settled before the event loop turns (${early} of ${SENDS})`);
  t.deepEqual(outcome.slice(SENDS - BATCH), new Array<string>(BATCH).fill('pending'), 'the batch the coordinator has not seen is still pending');

  bus.coordinator.runOnce();
  await Promise.race([
    Promise.allSettled(sends),
    sleep(10_000).then(() => { throw new Error('a send() did not settle'); }),
  ]);
  await null;
  t.deepEqual(order, sends.map((_, i) => i), 'promises settle in the order the sends were made');
  t.true(outcome.every((o, i) => (i % 2 === 0 ? o === 'ok' : o === 'ok' || o === 'EDQUOT')), outcome.join(' '));
  const toBOutcomes = outcome.filter((_, i) => i % 2 === 1);
  const firstRefused = toBOutcomes.indexOf('EDQUOT');
  t.true(firstRefused > 0, `some sends to B pass before its quota ends: ${toBOutcomes.join(' ')}`);
  t.true(toBOutcomes.slice(firstRefused).every((o) => o === 'EDQUOT'), `then every send to B is refused: ${toBOutcomes.join(' ')}`);
  // What B received is exactly the sends to B that succeeded, in order.
  const got: string[] = [];
  for (let m = b.peer.tryRecv(); m !== undefined; m = b.peer.tryRecv()) got.push(m.text());
  t.deepEqual(got, outcome.flatMap((o, i) => (i % 2 === 1 && o === 'ok' ? [`m${i}`] : [])));
});
