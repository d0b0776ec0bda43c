/*
 * The quota rule through the whole bus (semantics.md 5.2-5.4): real peers in real workers,
 * real sends, and bus.usage(uid) compared, whole, with an independent model of the
 * receiving user (test/fixtures/quota-harness.ts QuotaModel) after every step. Fixed
 * numbers from the seed (1024 -> 512 / 256 / 128) and from dbus-broker (512 / 170) are
 * asserted as literals too, so a model that drifted with the library would still be caught.
 *
 * Receipt is accounted lazily by the coordinator, but every quota check and usage() first
 * syncs the receiver's tail, so after a recv in the worker the figures are exact. Slice
 * and handle releases travel on the receiver's own request ring, so they are followed by
 * a query() barrier (QPeer.settled) before usage() is read.
 */

import test, { type ExecutionContext } from 'ava';
import { QBus, QuotaModel, cost, edquot, type QPeer, type Vec } from './fixtures/quota-harness.js';

const RECV = 5000;       // the receiving user
const A = 1001, B = 1002, C = 1003;
const BOUND = 5000;      // no sendUntilRefused loop below may run longer than this

const ONE: Vec = cost(1, 0);           // 'x': one message, no handle, 8 bytes

async function same(t: ExecutionContext, qb: QBus, model: QuotaModel, what: string): Promise<void> {
  t.deepEqual(await qb.usage(model.owner), model.usage(), `usage(${model.owner}) ${what}`);
}

/** Sends from `peer` until refused, checked against the model's prediction for `uid`. */
async function fill(
  t: ExecutionContext, qb: QBus, model: QuotaModel, peer: QPeer, to: number, c: Vec, spec: Parameters<QPeer['sendUntilRefused']>[2], what: string,
): Promise<number> {
  const expected = model.sendUntilRefused(peer.uid, c);
  const got = await peer.sendUntilRefused(to, BOUND, spec);
  t.is(got.sent, expected.sent, `${what}: sends before the refusal`);
  edquot(t, got.error, expected.refused!, model.owner, what);
  await same(t, qb, model, `after ${what}`);
  return got.sent;
}

test('messages: with a limit of 1024 a non-reading receiver takes exactly 512 from the first uid, 256 from the second, 128 from the third, and two peers of one uid share one share', async (t) => {
  const qb = await QBus.start(t, { users: { [RECV]: { messages: 1024 } } });
  const recv = await qb.peer(RECV);
  const a1 = await qb.peer(A);
  const a2 = await qb.peer(A);
  const b = await qb.peer(B);
  const c = await qb.peer(C);
  const [, hA1, hA2, hB, hC] = await qb.node(recv, a1, a2, b, c);
  const m = new QuotaModel(RECV, (await qb.usage(RECV)).max);
  t.deepEqual(m.usage().max, { messages: 1024, handles: 65536, bytes: 16 * 1024 * 1024 });
  m.chargeCommitted([0, 1, 0]); // the receiver's own node
  await same(t, qb, m, 'at start');

  // Uid A through two peers: 300 from one, then the other is stopped at the shared 512.
  const first = await a1.sendUntilRefused(hA1, 300);
  t.deepEqual(first, { sent: 300, error: null });
  m.sendUntilRefused(A, ONE, 300);
  await same(t, qb, m, 'after 300 from the first peer of A');
  const second = await fill(t, qb, m, a2, hA2, ONE, undefined, 'second peer of A');
  t.is(second, 212, 'the second peer of A gets only what is left of A\'s one share');
  const again = await a1.sendUntilRefused(hA1, BOUND);
  t.is(again.sent, 0, 'the first peer of A is refused too');
  edquot(t, again.error, 'messages', RECV, 'first peer of A after the share is full');
  const u = await qb.usage(RECV);
  t.is(u.shares[A]?.messages, 512);
  t.is(u.remaining.messages, 512);

  t.is(await fill(t, qb, m, b, hB, ONE, undefined, 'uid B'), 256);
  t.is(await fill(t, qb, m, c, hC, ONE, undefined, 'uid C'), 128);
  const end = await qb.usage(RECV);
  t.is(end.remaining.messages, 128);
  t.deepEqual(
    Object.fromEntries(Object.entries(end.shares).map(([k, v]) => [k, v.messages])),
    { [A]: 512, [B]: 256, [C]: 128 },
  );
  t.deepEqual(end.shares[A], { messages: 512, handles: 0, bytes: 512 * 8 });
});

test('messages: a refused send changes nothing: usage, the receiver\'s query and its queue are identical before and after', async (t) => {
  const qb = await QBus.start(t, { users: { [RECV]: { messages: 1024 } } });
  const recv = await qb.peer(RECV);
  const a = await qb.peer(A);
  const [, hA] = await qb.node(recv, a);
  const full = await a.sendUntilRefused(hA, BOUND);
  t.is(full.sent, 512);
  const usageBefore = await qb.usage(RECV);
  const queryBefore = await recv.query();
  const senderBefore = await qb.usage(A);
  for (let i = 0; i < 20; i++) {
    const err = await t.throwsAsync(a.send(hA, { text: 'y'.repeat(i * 3) }));
    t.is((err as { code?: string }).code, 'EDQUOT');
  }
  t.deepEqual(await qb.usage(RECV), usageBefore);
  t.deepEqual(await recv.query(), queryBefore);
  t.deepEqual(await qb.usage(A), senderBefore);
  const got = await recv.drain();
  t.is(got.length, 512, 'exactly the accepted messages are queued, none of the refused');
  t.true(got.every((x) => x.text === 'x' && x.senderUid === A));
});

test('messages: dequeuing lowers the sender\'s share but not remaining, and the numbers grow again exactly as s + 2c <= R says; releases grow them more', async (t) => {
  const qb = await QBus.start(t, { users: { [RECV]: { messages: 1024 } } });
  const recv = await qb.peer(RECV);
  const self = await qb.peer(RECV);
  const a = await qb.peer(A);
  const b = await qb.peer(B);
  const c = await qb.peer(C);
  const [, hSelf, hA, hB, hC] = await qb.node(recv, self, a, b, c);
  const m = new QuotaModel(RECV, { messages: 1024, handles: 65536, bytes: 16 * 1024 * 1024 });
  m.chargeCommitted([0, 2, 0]); // the receiver's node and the self peer's handle to it: both uid RECV
  await same(t, qb, m, 'at start');

  t.is(await fill(t, qb, m, a, hA, ONE, undefined, 'A'), 512);
  t.is(await fill(t, qb, m, b, hB, ONE, undefined, 'B'), 256);
  t.is(await fill(t, qb, m, c, hC, ONE, undefined, 'C'), 128);

  // The receiver dequeues A's 512 (they were queued first) and keeps them.
  const got = await recv.recvMany(512, { keep: true });
  t.true(got.every((x) => x.senderUid === A));
  m.recv(512);
  await same(t, qb, m, 'after dequeuing 512');
  const u = await qb.usage(RECV);
  t.false(A in u.shares, 'A has nothing in flight any more');
  t.is(u.remaining.messages, 128, 'remaining does not grow on receive');

  // A's share is 0 and R is 128: A gets 64 (the rule), B and C nothing.
  t.is(await fill(t, qb, m, a, hA, ONE, undefined, 'A after the dequeue'), 64);
  t.is(await fill(t, qb, m, b, hB, ONE, undefined, 'B after the dequeue'), 0);

  // The receiver releases the 512 it kept: remaining grows by 512.
  t.is(await recv.releaseKept(512), 512);
  await recv.settled();
  m.release(512);
  await same(t, qb, m, 'after releasing 512');
  t.is((await qb.usage(RECV)).remaining.messages, 576);
  t.is(await fill(t, qb, m, a, hA, ONE, undefined, 'A after the release'), 256);

  // The receiving uid itself is bounded by remaining only: it takes all 320 that are left.
  t.is(await fill(t, qb, m, self, hSelf, ONE, undefined, 'the receiving uid itself'), 320);
  for (const [p, h] of [[a, hA], [b, hB], [c, hC]] as const) {
    const r = await p.sendUntilRefused(h, BOUND);
    t.is(r.sent, 0);
    edquot(t, r.error, 'messages', RECV, `uid ${p.uid} with nothing remaining`);
  }
  const end = await qb.usage(RECV);
  // The same end state as the vector 'half rule, greedy senders and a receive in between'.
  t.is(end.remaining.messages, 0);
  t.deepEqual(
    Object.fromEntries(Object.entries(end.shares).map(([k, v]) => [k, v.messages])),
    { [A]: 320, [B]: 256, [C]: 128 },
  );
});

test('messages: sends within one uid are bounded by what remains, not by half', async (t) => {
  const qb = await QBus.start(t, { users: { [RECV]: { messages: 1024 } } });
  const recv = await qb.peer(RECV);
  const self = await qb.peer(RECV);
  const a = await qb.peer(A);
  const [, hSelf, hA] = await qb.node(recv, self, a);
  const m = new QuotaModel(RECV, { messages: 1024, handles: 65536, bytes: 16 * 1024 * 1024 });
  m.chargeCommitted([0, 2, 0]);

  t.is(await fill(t, qb, m, self, hSelf, ONE, undefined, 'uid RECV to its own peer, alone'), 1024);
  t.deepEqual((await qb.usage(RECV)).shares, {}, 'own sends are no foreign share');
  // A foreign uid now finds nothing remaining.
  t.is(await fill(t, qb, m, a, hA, ONE, undefined, 'A with nothing remaining'), 0);

  // Free 600 by receiving and releasing: A still gets only half of it, the uid itself all the rest.
  await recv.recvMany(600);
  await recv.settled();
  m.recv(600);
  m.release(600);
  await same(t, qb, m, 'after 600 received and released');
  t.is(await fill(t, qb, m, a, hA, ONE, undefined, 'A on 600 free'), 300);
  t.is(await fill(t, qb, m, self, hSelf, ONE, undefined, 'uid RECV on the 300 left'), 300);
  t.is((await qb.usage(RECV)).remaining.messages, 0);
});

test('handles: with a limit of 1024 (one already the receiver\'s own node) messages carrying a handle are refused on handles after 511, 256, 128; receive does not give handles back, nor does release(), releaseHandle does', async (t) => {
  const qb = await QBus.start(t, { users: { [RECV]: { handles: 1024 } } });
  const recv = await qb.peer(RECV);
  const a = await qb.peer(A);
  const b = await qb.peer(B);
  const c = await qb.peer(C);
  const [, hA, hB, hC] = await qb.node(recv, a, b, c);
  const own = { a: await a.createNode(), b: await b.createNode(), c: await c.createNode() };
  const m = new QuotaModel(RECV, { messages: 16384, handles: 1024, bytes: 16 * 1024 * 1024 });
  m.chargeCommitted([0, 1, 0]);
  await same(t, qb, m, 'at start');
  const H: Vec = cost(1, 1); // 'x' and one handle: 1 message, 1 handle, 8 bytes

  t.is(await fill(t, qb, m, a, hA, H, { handles: [own.a] }, 'A'), 511);
  t.is(await fill(t, qb, m, b, hB, H, { handles: [own.b] }, 'B'), 256);
  t.is(await fill(t, qb, m, c, hC, H, { handles: [own.c] }, 'C'), 128);
  t.is((await qb.usage(RECV)).remaining.handles, 128);
  // Without handles, A is not refused: the handle quota only binds what carries handles.
  const plain = await a.sendUntilRefused(hA, 3);
  t.deepEqual(plain, { sent: 3, error: null });
  m.sendUntilRefused(A, ONE, 3);
  await same(t, qb, m, 'after 3 handle-less messages from A');

  // Dequeue 600 (A's 511 with handles, then 89 of B's), keeping them.
  const got = await recv.recvMany(600, { keep: true });
  t.is(got.filter((x) => x.senderUid === A).length, 511);
  t.true(got.every((x) => x.handles.length === 1));
  m.recv(600);
  await same(t, qb, m, 'after dequeuing 600');
  t.is((await qb.usage(RECV)).remaining.handles, 128, 'received handles stay charged');
  t.is(await fill(t, qb, m, a, hA, H, { handles: [own.a] }, 'A after the dequeue'), 64);

  // release() gives messages and bytes back, not handles.
  t.is(await recv.releaseKept(), 600);
  await recv.settled();
  m.release(600);
  await same(t, qb, m, 'after releasing the 600 messages');
  t.is((await qb.usage(RECV)).remaining.handles, 64);
  t.is(await fill(t, qb, m, a, hA, H, { handles: [own.a] }, 'A after release() only'), 0);

  // releaseHandle gives them back: one reference arrived in each of those 600 messages.
  t.is(await recv.releaseReceivedRefs(), 600);
  await recv.settled();
  m.releaseHandles(600);
  await same(t, qb, m, 'after releasing 600 handle references');
  t.is((await qb.usage(RECV)).remaining.handles, 664);
  t.is(await fill(t, qb, m, a, hA, H, { handles: [own.a] }, 'A after releaseHandle'), 300);
  await fill(t, qb, m, b, hB, H, { handles: [own.b] }, 'B after releaseHandle');
});

test('bytes: with 64 KiB and 128-byte payloads the first uid gets 256 messages (half), the second 128, the third 64; dequeue and release grow them as the rule says', async (t) => {
  const qb = await QBus.start(t, { users: { [RECV]: { bytes: 64 * 1024 } } });
  const recv = await qb.peer(RECV);
  const a = await qb.peer(A);
  const b = await qb.peer(B);
  const c = await qb.peer(C);
  const [recvNode, hA, hB, hC] = await qb.node(recv, a, b, c);
  const m = new QuotaModel(RECV, { messages: 16384, handles: 65536, bytes: 65536 });
  m.chargeCommitted([0, 1, 0]);
  const K: Vec = cost(128, 0);
  t.deepEqual(K, [1, 0, 128]);
  const spec = { size: 128 };

  t.is(await fill(t, qb, m, a, hA, K, spec, 'A'), 256);
  t.is((await qb.usage(RECV)).shares[A]?.bytes, 32 * 1024);
  t.is(await fill(t, qb, m, b, hB, K, spec, 'B'), 128);
  t.is(await fill(t, qb, m, c, hC, K, spec, 'C'), 64);
  t.is((await qb.usage(RECV)).remaining.bytes, 8 * 1024);
  // A fresh uid on those 8 KiB: one message of exactly half (4096 bytes) passes, 8 bytes more does not.
  const D = 1004;
  const d = await qb.peer(D);
  const hD = await qb.bus.transferHandle(recv.ticket, recvNode, d.ticket);
  t.is(m.refuses(D, cost(4104, 0)), 'bytes');
  const big = await d.sendUntilRefused(hD, 1, { size: 4104 });
  t.is(big.sent, 0);
  edquot(t, big.error, 'bytes', RECV, 'a fresh uid asking for more than half of what remains');
  await same(t, qb, m, 'after the refused 4104-byte message');
  t.is(m.refuses(D, cost(4096, 0)), null);
  t.deepEqual(await d.sendUntilRefused(hD, 1, { size: 4096 }), { sent: 1, error: null });
  m.send(D, cost(4096, 0));
  await same(t, qb, m, 'after the 4096-byte message');

  const got = await recv.recvMany(300, { keep: true });
  t.true(got.every((x) => x.length === 128));
  m.recv(300);
  await same(t, qb, m, 'after dequeuing 300');
  await fill(t, qb, m, a, hA, K, spec, 'A after the dequeue');
  t.is(await recv.releaseKept(), 300);
  await recv.settled();
  m.release(300);
  await same(t, qb, m, 'after releasing 300');
  const more = await fill(t, qb, m, a, hA, K, spec, 'A after the release');
  t.true(more > 0, 'release gave bytes back');
  await fill(t, qb, m, b, hB, K, spec, 'B after the release');
});

test('peer level: a receiving peer with lower limits than its user refuses at half of its own remaining, naming the receiving uid, while its user still has room', async (t) => {
  const qb = await QBus.start(t, { users: { [RECV]: { messages: 1024 } } });
  const small = await qb.peer(RECV, { messages: 100 });
  const big = await qb.peer(RECV);
  const a = await qb.peer(A);
  const [, hSmall] = await qb.node(small, a);
  const [, hBig] = await qb.node(big, a);
  t.deepEqual((await small.query()).limits.messages, 100);
  const user = new QuotaModel(RECV, { messages: 1024, handles: 65536, bytes: 16 * 1024 * 1024 });
  user.chargeCommitted([0, 2, 0]);
  const peer = new QuotaModel(RECV, { messages: 100, handles: 65536, bytes: 16 * 1024 * 1024 });
  peer.chargeCommitted([0, 1, 0]);

  let expected = 0;
  while (user.refuses(A, ONE) === null && peer.refuses(A, ONE) === null) {
    user.send(A, ONE);
    peer.send(A, ONE);
    expected++;
  }
  t.is(expected, 50);
  t.is(user.refuses(A, ONE), null, 'the user level would still allow it: the refusal is the peer\'s');
  const r = await a.sendUntilRefused(hSmall, BOUND);
  t.is(r.sent, 50);
  edquot(t, r.error, 'messages', RECV, 'peer-level refusal');
  await same(t, qb, user, 'after the small peer is full');
  t.deepEqual((await small.query()).remaining.messages, 50);

  // The user's other peer still takes A's messages, up to A's user-level share of 512 in all.
  const expectBig = user.sendUntilRefused(A, ONE);
  t.is(expectBig.sent, 462);
  const rb = await a.sendUntilRefused(hBig, BOUND);
  t.is(rb.sent, 462);
  edquot(t, rb.error, 'messages', RECV, 'user-level refusal');
  await same(t, qb, user, 'after the big peer');
  t.is((await qb.usage(RECV)).shares[A]?.messages, 512);
});

test('polynomial: quota "polynomial" gives dbus-broker\'s numbers, 512 to the first uid and 170 to the second ((s + c)(n + 1) - s <= R), and dequeuing changes n', async (t) => {
  const qb = await QBus.start(t, { quota: 'polynomial', users: { [RECV]: { messages: 1024 } } });
  const recv = await qb.peer(RECV);
  const a = await qb.peer(A);
  const b = await qb.peer(B);
  const c = await qb.peer(C);
  const [, hA, hB, hC] = await qb.node(recv, a, b, c);
  const m = new QuotaModel(RECV, { messages: 1024, handles: 65536, bytes: 16 * 1024 * 1024 }, 'polynomial');
  m.chargeCommitted([0, 1, 0]);

  t.is(await fill(t, qb, m, a, hA, ONE, undefined, 'A'), 512);
  t.is(await fill(t, qb, m, b, hB, ONE, undefined, 'B'), 170);
  t.is(await fill(t, qb, m, c, hC, ONE, undefined, 'C'), 85);

  // A's 512 are received and released: A leaves n, and B and C may grow.
  await recv.recvMany(512);
  await recv.settled();
  m.recv(512);
  m.release(512);
  await same(t, qb, m, 'after A\'s messages are received and released');
  await fill(t, qb, m, b, hB, ONE, undefined, 'B after A left');
  await fill(t, qb, m, c, hC, ONE, undefined, 'C after A left');
  await fill(t, qb, m, a, hA, ONE, undefined, 'A back again');
});

test('multicast, all-or-nothing: one destination over quota refuses the whole send, nobody receives, nothing is charged', async (t) => {
  const X = 6001, Y = 6002;
  const qb = await QBus.start(t, { users: { [X]: { messages: 1024 }, [Y]: { messages: 1024 } } });
  const x = await qb.peer(X);
  const y = await qb.peer(Y);
  const a = await qb.peer(A);
  const [, hX] = await qb.node(x, a);
  const [, hY] = await qb.node(y, a);
  t.is((await a.sendUntilRefused(hX, BOUND)).sent, 512);
  const ux = await qb.usage(X);
  const uy = await qb.usage(Y);
  const err = await t.throwsAsync(a.send([hY, hX], { text: 'both' }));
  t.is((err as { code?: string }).code, 'EDQUOT');
  t.is((err as { resource?: string }).resource, 'messages');
  t.is((err as { uid?: number }).uid, X, 'the refusing uid is the full destination\'s');
  t.deepEqual(await qb.usage(X), ux);
  t.deepEqual(await qb.usage(Y), uy);
  t.deepEqual(await y.drain(), [], 'the destination with room got nothing either');

  // Once X has received and released one, the same multicast goes to both.
  await x.recvMany(1);
  await x.settled();
  await a.send([hY, hX], { text: 'both' });
  const gotY = await y.recvMany(1);
  t.is(gotY[0].text, 'both');
  const restX = await x.drain();
  t.is(restX.length, 512);
  t.is(restX[511].text, 'both');
});

test('multicast, partial: destinations that accept get the message, the refused ones are reported each with EDQUOT, resource and uid', async (t) => {
  const X = 6001, Y = 6002, Z = 6003;
  const qb = await QBus.start(t, { users: { [X]: { messages: 1024 }, [Y]: { messages: 1024 }, [Z]: { messages: 64 } } });
  const x = await qb.peer(X);
  const y = await qb.peer(Y);
  const z = await qb.peer(Z, {});
  const a = await qb.peer(A);
  const [, hX] = await qb.node(x, a);
  const [, hY] = await qb.node(y, a);
  const [, hZ] = await qb.node(z, a);
  t.is((await a.sendUntilRefused(hX, BOUND)).sent, 512);
  const ux = await qb.usage(X);

  const r = await a.sendPartial([hY, hX], { text: 'part' });
  t.deepEqual(r.delivered, [hY]);
  t.is(r.refused.length, 1);
  t.is(r.refused[0].destination, hX);
  t.is(r.refused[0].error.code, 'EDQUOT');
  t.is(r.refused[0].error.resource, 'messages');
  t.is(r.refused[0].error.uid, X);
  t.deepEqual(await qb.usage(X), ux, 'the refused destination is not charged');
  t.deepEqual((await qb.usage(Y)).shares[A], { messages: 1, handles: 0, bytes: 8 });
  t.is((await y.recvMany(1))[0].text, 'part');
  await y.settled();

  // Z (64 messages) fills at 32; then a partial multicast to all three reaches Y alone.
  t.is((await a.sendUntilRefused(hZ, BOUND)).sent, 32);
  const r3 = await a.sendPartial([hX, hY, hZ], { text: 'three' });
  t.deepEqual(r3.delivered, [hY]);
  t.deepEqual(r3.refused.map((e) => [e.destination, e.error.code, e.error.uid]), [[hX, 'EDQUOT', X], [hZ, 'EDQUOT', Z]]);
  t.is((await y.recvMany(1))[0].text, 'three');
  await y.settled();
  t.is((await z.drain()).length, 32, 'Z has only the 32 accepted before');
  await z.settled();

  // Everyone full: nobody gets it, nothing is charged, and the report says so for each.
  t.is((await a.sendUntilRefused(hY, BOUND)).sent, 512);
  t.is((await a.sendUntilRefused(hZ, BOUND)).sent, 32);
  const before = [await qb.usage(X), await qb.usage(Y), await qb.usage(Z)];
  const none = await a.sendPartial([hX, hY, hZ], { text: 'none' });
  t.deepEqual(none.delivered, []);
  t.deepEqual(none.refused.map((e) => [e.destination, e.error.code, e.error.uid]), [[hX, 'EDQUOT', X], [hY, 'EDQUOT', Y], [hZ, 'EDQUOT', Z]]);
  t.deepEqual([await qb.usage(X), await qb.usage(Y), await qb.usage(Z)], before);
});
