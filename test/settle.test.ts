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
