/*
 * The receiver keeps the last Uint8Array view of each pool slot and hands it to the next
 * message in that slot when the length matches (src/peer/pool-map.ts, view()). A slot is
 * reused only after its message was released, so: every message must still show exactly
 * its own bytes and length, messages held at once must have views of their own, and a
 * steady stream must actually reuse views (else the path is not exercised). The sender
 * is a worker (test/fixtures/post-peer.ts: messages "0", "1", ...), so lengths change
 * from 1 to 2 to 3 bytes while slots are reused.
 */

import test, { type ExecutionContext } from 'ava';
import { Bus, Peer, type Message } from '../src/index.js';
import { startPostWorker } from './helpers/post-worker.js';

async function setup(t: ExecutionContext) {
  const bus = await Bus.start();
  const rt = await bus.createPeer({ uid: 2 });
  const st = await bus.createPeer({ uid: 1 });
  const to = await bus.transferHandle(rt, await bus.createNode(rt), st);
  const receiver = Peer.open(rt);
  t.teardown(() => receiver.close().catch(() => undefined));
  const call = startPostWorker(t, bus, st, to);
  return { receiver, call };
}

function recv(peer: Peer): Promise<Message> {
  return peer.recv({ signal: AbortSignal.timeout(10_000) });
}

test('a message in a released slot gets its view when the length matches, and each shows its own bytes and length', async (t) => {
  const { receiver, call } = await setup(t);
  const views = new Set<Uint8Array>();
  let received = 0;
  // Round k posts "0" .. String(k - 1) once the previous round is released, so each lands in a
  // freed slot, whose last message had the same length or not (1, 2 and 3 bytes).
  for (let k = 1; k <= 120; k++) {
    const r = await call({ op: 'post', count: k });
    t.is(r.rejected.length, 0);
    const got: Message[] = [];
    for (let i = 0; i < k; i++) got.push(await recv(receiver));
    for (let i = 0; i < k; i++) {
      const m = got[i]!;
      const want = String(i);
      if (m.data.length !== want.length || m.text() !== want) return t.fail(`round ${k}: got "${m.text()}" (${m.data.length} bytes) for "${want}"`);
      views.add(m.data);
    }
    for (const m of got) m.release();
    received += k;
  }
  t.true(views.size < received / 2, `${views.size} views for ${received} messages: the slots' views were reused`);
});

test('messages held at once have views of their own', async (t) => {
  const { receiver, call } = await setup(t);
  for (let round = 0; round < 20; round++) {
    const r = await call({ op: 'post', count: 12 });
    t.is(r.rejected.length, 0);
    const held: Message[] = [];
    for (let i = 0; i < 12; i++) held.push(await recv(receiver));
    t.is(new Set(held.map((m) => m.data)).size, held.length, 'no two unreleased messages share a view');
    t.deepEqual(held.map((m) => m.text()), Array.from({ length: 12 }, (_, i) => String(i)));
    for (const m of held) m.release();
  }
});
