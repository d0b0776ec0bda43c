/*
 * The three attacks the seed answers (semantics.md section 6), played with real peers in
 * real workers: a service (test/fixtures/quota-worker.ts `serve`) that answers every
 * request carrying a reply handle with 're:' + its text, subscribers that read as events
 * arrive (`autoRead`), and a publisher that multicasts events in partial mode (`publish`).
 * Every figure asserted is either exact by the rule (the attacker never reads, so its
 * share only grows) or an invariant that holds however the threads interleave; none
 * depends on speed.
 */

import test from 'ava';
import { QBus, QuotaModel, cost, edquot, type ErrorData, type QPeer } from './fixtures/quota-harness.js';

const DEFAULT_MAX = { messages: 16384, handles: 65536, bytes: 16 * 1024 * 1024 };

interface ServiceStats {
  handled: number;
  flood: number;
  replied: number;
  refused: Array<{ requester: number; code: string; resource?: string; uid?: number }>;
  otherErrors: string[];
  clients: number;
}

function stats(svc: QPeer): Promise<ServiceStats> {
  return svc.call('serviceStats');
}

/** One request/reply round trip from `client`; resolves with the reply text. */
async function ask(client: QPeer, toService: number, replyNode: number, text: string): Promise<string> {
  await client.send(toService, { text, handles: [replyNode] });
  const [r] = await client.recvMany(1, { timeoutMs: 10_000 });
  return r.text;
}

test('attack 1: a uid flooding a service holds at most half of its free messages; another uid still gets its share and its requests answered', async (t) => {
  const S = 100, F = 9001, G = 9002;
  const qb = await QBus.start(t, { users: { [S]: { messages: 1024 } } });
  const svc = await qb.peer(S);
  const f1 = await qb.peer(F);
  const f2 = await qb.peer(F);
  const g = await qb.peer(G);
  const [, hF1, hF2, hG] = await qb.node(svc, f1, f2, g);
  const gReply = await g.createNode();
  await svc.call('serve'); // parked: the service reads nothing until resume
  const m = new QuotaModel(S, { ...DEFAULT_MAX, messages: 1024 });
  m.chargeCommitted([0, 1, 0]);

  // The flood, from two peers of one uid: 512 and not one more.
  const flood = cost('flood'.length, 0);
  const r1 = await f1.sendUntilRefused(hF1, 5000, { text: 'flood' });
  t.is(r1.sent, 512);
  edquot(t, r1.error, 'messages', S, 'flooder');
  const r2 = await f2.sendUntilRefused(hF2, 5000, { text: 'flood' });
  t.is(r2.sent, 0, 'a second peer of the flooding uid gets nothing more');
  edquot(t, r2.error, 'messages', S, 'second flooder peer');
  m.sendUntilRefused(F, flood);
  t.deepEqual(await qb.usage(S), m.usage());

  // Another uid still gets its share: half of the 512 the flood left.
  const request = cost('req'.length, 1);
  const rg = await g.sendUntilRefused(hG, 5000, { text: 'req', handles: [gReply] });
  t.is(rg.sent, 256);
  edquot(t, rg.error, 'messages', S, 'second uid');
  m.sendUntilRefused(G, request);
  t.deepEqual(await qb.usage(S), m.usage());

  // The service works through its queue and answers every request of G.
  await svc.call('resume');
  await svc.call('waitHandled', 768, 20_000);
  const replies = await g.recvMany(256, { timeoutMs: 20_000 });
  t.true(replies.every((r) => r.text === 're:req' && r.senderUid === S));
  const st = await stats(svc);
  t.like(st, { handled: 768, flood: 512, replied: 256, refused: [], otherErrors: [], clients: 1 });
  await svc.settled();
  // Back at its maximum, but for its node and the one reference it keeps to G's reply node.
  t.deepEqual(await qb.usage(S), { max: m.usage().max, remaining: { ...m.usage().max, handles: 65536 - 2 }, shares: {} });

  // Live: the flood goes on while G asks 50 questions; G is never refused and always answered.
  const flooding = f1.sendCount(hF1, 1500, { text: 'flood' });
  flooding.catch(() => undefined); // awaited below; this only keeps an early failure from going unhandled
  const answers: string[] = [];
  for (let i = 0; i < 50; i++) answers.push(await ask(g, hG, gReply, `q${i}`));
  t.deepEqual(answers, Array.from({ length: 50 }, (_, i) => `re:q${i}`));
  const fl = await flooding;
  const refusedCodes = Object.keys(fl.errors);
  t.true(refusedCodes.every((k) => k === `EDQUOT:messages:${S}`), `flooder refusals: ${JSON.stringify(fl.errors)}`);
  t.is(fl.ok + (fl.errors[`EDQUOT:messages:${S}`] ?? 0), 1500);
  await svc.call('waitHandled', 768 + 50 + fl.ok, 30_000);
  await svc.settled();
  t.deepEqual((await qb.usage(S)).shares, {});
  t.is((await stats(svc)).refused.length, 0);
});

test('attack 1, live: however the flood interleaves with the service reading, the flooding uid never holds more than half of the service\'s messages, and whenever the service stalls it is stopped at exactly half', async (t) => {
  const S = 100, F = 9001;
  const qb = await QBus.start(t, { users: { [S]: { messages: 256 } } });
  const svc = await qb.peer(S);
  const f = await qb.peer(F);
  const [, hF] = await qb.node(svc, f);
  await svc.call('serve');
  let samples = 0;
  let accepted = 0;
  for (let round = 0; round < 5; round++) {
    // The service reads while a burst of 300 arrives at once.
    await svc.call('resume');
    let done = false;
    const burst = f.sendBurst(hF, 300, { text: 'flood' });
    burst.then(() => { done = true; }, () => { done = true; });
    while (!done) {
      const u = await qb.usage(S);
      const share = u.shares[F]?.messages ?? 0;
      // Only F sends here, so what it holds in flight never exceeds what is left to others.
      t.true(share <= u.remaining.messages, `round ${round}: share ${share} > remaining ${u.remaining.messages}`);
      t.true(share <= 128, `round ${round}: share ${share} is over half of 256`);
      samples++;
      await new Promise((r) => setTimeout(r, 2));
    }
    const b = await burst;
    t.true(Object.keys(b.errors).every((k) => k === `EDQUOT:messages:${S}`), `round ${round}: ${JSON.stringify(b.errors)}`);
    t.is(b.ok + (b.errors[`EDQUOT:messages:${S}`] ?? 0), 300);
    accepted += b.ok;
    // The service stalls: F fills up to exactly half of the 256, whatever it had in flight.
    await svc.call('pause');
    await svc.settled();
    const before = (await qb.usage(S)).shares[F]?.messages ?? 0;
    t.true(before <= 128);
    const fill = await f.sendUntilRefused(hF, 1000, { text: 'flood' });
    t.is(fill.sent, 128 - before, `round ${round}: F had ${before} in flight`);
    t.like(fill.error, { code: 'EDQUOT', resource: 'messages', uid: S });
    accepted += fill.sent;
    const u = await qb.usage(S);
    t.is(u.shares[F]?.messages, 128);
    t.is(u.remaining.messages, 128);
  }
  await svc.call('resume');
  await svc.call('waitHandled', accepted, 60_000);
  await svc.settled();
  t.deepEqual((await qb.usage(S)).shares, {});
  t.is((await qb.usage(S)).remaining.messages, 256);
  t.true(samples > 0);
});

test('attack 2 groundwork: a service can reply through the handle a request carried as soon as it has received it', async (t) => {
  const S = 100;
  const qb = await QBus.start(t);
  const svc = await qb.peer(S);
  const failures: string[] = [];
  for (let i = 0; i < 4; i++) {
    const client = await qb.peer(9200 + i);
    const [, h] = await qb.node(svc, client);
    const reply = await client.createNode();
    await client.send(h, { text: 'req', handles: [reply] });
    // Received, and kept: nothing else has happened on the bus since.
    const [req] = await svc.recvMany(1, { keep: true });
    t.is(req.handles.length, 1);
    try {
      await svc.send(req.handles[0], { text: 're:req' });
      t.is((await client.recvMany(1))[0].text, 're:req');
    } catch (e) {
      failures.push(`client ${i}: ${(e as Error).message}`);
    }
    await svc.releaseKept();
  }
  t.deepEqual(failures, [], 'the received reply handle must be usable at once (it is the receiver\'s from RECV on)');
});

test('attack 2: a uid that never reads replies has them refused with EDQUOT charged to it, the service\'s own resources stay untouched and it goes on answering others', async (t) => {
  const S = 100, Q = 9101, G = 9102;
  const qb = await QBus.start(t, { users: { [Q]: { messages: 64 } } });
  const svc = await qb.peer(S);
  const q = await qb.peer(Q);
  const g = await qb.peer(G);
  const [, hQ, hG] = await qb.node(svc, q, g);
  const qReply = await q.createNode();
  const gReply = await g.createNode();
  await svc.call('serve');
  await svc.call('resume');

  // Q sends 100 requests and never reads a reply. Its requests are all accepted: the service reads them.
  const sent = await q.sendCount(hQ, 100, { text: 'req', handles: [qReply] });
  t.deepEqual(sent, { ok: 100, errors: {} });
  await svc.call('waitHandled', 100, 20_000);
  const st = await stats(svc);
  t.is(st.replied, 32, 'half of Q\'s 64 messages: 32 replies fit');
  t.is(st.refused.length, 68);
  t.true(st.refused.every((r) => r.requester === Q && r.code === 'EDQUOT' && r.resource === 'messages' && r.uid === Q),
    JSON.stringify(st.refused.slice(0, 3)));
  t.deepEqual(st.otherErrors, []);

  // The replies are charged to Q, as the service's share on Q.
  const mq = new QuotaModel(Q, { ...DEFAULT_MAX, messages: 64 });
  mq.chargeCommitted([0, 2, 0]); // Q's reply node, and its handle to the service's node
  const reply = cost('re:req'.length, 0);
  t.is(mq.sendUntilRefused(S, reply).sent, 32);
  t.deepEqual(await qb.usage(Q), mq.usage());
  t.deepEqual((await qb.usage(Q)).shares, { [S]: { messages: 32, handles: 0, bytes: 32 * 8 } });

  // The service's own resources: nothing but its node and one reference to Q's reply node.
  await svc.settled();
  const svcAtRest = { max: DEFAULT_MAX, remaining: { ...DEFAULT_MAX, handles: DEFAULT_MAX.handles - 2 }, shares: {} };
  t.deepEqual(await qb.usage(S), svcAtRest);
  t.deepEqual(await svc.query(), { limits: DEFAULT_MAX, remaining: svcAtRest.remaining });

  // And it goes on answering everyone else.
  for (let i = 0; i < 20; i++) t.is(await ask(g, hG, gReply, `g${i}`), `re:g${i}`);
  // Q asking again only costs Q: every reply to it is refused again, still charged to Q.
  t.deepEqual(await q.sendCount(hQ, 10, { text: 'req', handles: [qReply] }), { ok: 10, errors: {} });
  await svc.call('waitHandled', 130, 20_000);
  const st2 = await stats(svc);
  t.is(st2.replied, 52);
  t.is(st2.refused.length, 78);
  t.true(st2.refused.every((r) => r.uid === Q));
  await svc.settled();
  t.deepEqual(await qb.usage(S), { ...svcAtRest, remaining: { ...svcAtRest.remaining, handles: DEFAULT_MAX.handles - 3 } });
  t.deepEqual(await qb.usage(Q), mq.usage());

  // Once Q reads its 32 replies, the service's replies to it go through again.
  const got = await q.recvMany(32);
  t.true(got.every((r) => r.text === 're:req'));
  await q.settled();
  t.deepEqual((await qb.usage(Q)).shares, {});
  t.is(await ask(q, hQ, qReply, 'again'), 're:again');
});

test('attack 3: subscribe + events: a subscriber that stops reading loses only its own events; the publisher and the other subscribers carry on', async (t) => {
  const P = 7000, S1 = 7001, S2 = 7002, S3 = 7003;
  const qb = await QBus.start(t, { users: { [S2]: { messages: 64 } } });
  const pub = await qb.peer(P);
  const s1 = await qb.peer(S1);
  const s2 = await qb.peer(S2);
  const s3 = await qb.peer(S3);
  const [, p1] = await qb.node(s1, pub);
  const [, p2] = await qb.node(s2, pub);
  const [, p3] = await qb.node(s3, pub);
  const dests = [p1, p2, p3];
  await s1.call('autoRead');
  await s3.call('autoRead');
  const events = (from: number, n: number) => Array.from({ length: n }, (_, i) => `event:${from + i}`);
  type PerDest = Record<number, { delivered: number; refused: number; errors: ErrorData[] }>;

  // Everyone reads the first 10.
  const ph1: PerDest = await pub.call('publish', dests, 0, 10);
  for (const d of dests) t.like(ph1[d], { delivered: 10, refused: 0 });
  t.deepEqual((await s2.recvMany(10)).map((m) => m.text), events(0, 10));
  await s2.settled();

  // S2 stops reading: of the next 90 it takes exactly 32 (half of its 64) and the rest are refused, to it alone.
  const ph2: PerDest = await pub.call('publish', dests, 10, 90);
  t.like(ph2[p1], { delivered: 90, refused: 0 });
  t.like(ph2[p3], { delivered: 90, refused: 0 });
  t.like(ph2[p2], { delivered: 32, refused: 58 });
  t.deepEqual(ph2[p2].errors.map((e) => [e.code, e.resource, e.uid]), [['EDQUOT', 'messages', S2]]);
  const m2 = new QuotaModel(S2, { ...DEFAULT_MAX, messages: 64 });
  m2.chargeCommitted([0, 1, 0]);
  t.is(m2.sendUntilRefused(P, cost('event:10'.length, 0)).sent, 32);
  t.deepEqual(await qb.usage(S2), m2.usage());

  // The publisher carries on, and so do the others.
  const ph3: PerDest = await pub.call('publish', dests, 100, 50);
  t.like(ph3[p1], { delivered: 50, refused: 0 });
  t.like(ph3[p3], { delivered: 50, refused: 0 });
  t.like(ph3[p2], { delivered: 0, refused: 50 });
  await s1.call('waitRead', 150, 20_000);
  await s3.call('waitRead', 150, 20_000);
  for (const s of [s1, s3]) {
    const r: { texts: string[]; errors: string[] } = await s.call('readStats');
    t.deepEqual(r.texts, events(0, 150), `subscriber ${s.uid} got every event, in order`);
    t.deepEqual(r.errors, []);
  }
  // Nothing of it was charged to the publisher: it holds its three handles and nothing else.
  t.deepEqual(await qb.usage(P), { max: DEFAULT_MAX, remaining: { ...DEFAULT_MAX, handles: DEFAULT_MAX.handles - 3 }, shares: {} });
  t.deepEqual(await qb.usage(S2), m2.usage(), 'the refused events changed nothing at S2');

  // S2 reads again: it finds exactly the 32 it accepted, and then gets new events again.
  t.deepEqual((await s2.drain()).map((m) => m.text), events(10, 32));
  await s2.settled();
  t.deepEqual(await qb.usage(S2), { max: m2.usage().max, remaining: { ...m2.usage().max, handles: DEFAULT_MAX.handles - 1 }, shares: {} });
  const ph4: PerDest = await pub.call('publish', dests, 150, 10);
  for (const d of dests) t.like(ph4[d], { delivered: 10, refused: 0 });
  t.deepEqual((await s2.recvMany(10)).map((m) => m.text), events(150, 10));
  await s1.call('waitRead', 160, 20_000);
  await s3.call('waitRead', 160, 20_000);
});
