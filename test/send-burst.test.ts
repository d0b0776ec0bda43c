/*
 * A send() burst may leave the coordinator's bell owed for its last sends
 * (src/peer/outbox.ts, commitSend): rung at the burst's end or before the library
 * blocks. These tests cover a sender thread that blocks outside the library right
 * after a burst: what it sent must still arrive, every message once, in order.
 */

import test, { type ExecutionContext } from 'ava';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Bus, Peer } from '../src/index.js';

async function blockedAfterBurst(t: ExecutionContext, count: number, bytes: number): Promise<void> {
  // The default maximum message size (1 MiB) gives a 2 MiB OUT ring: the sends of a test fit in it
  // (a send that finds the ring full queues a copy, which only the request pump moves in, and
  // the pump does not run while the thread is blocked).
  const bus = await Bus.start();
  const rt = await bus.createPeer({ uid: 2 });
  const st = await bus.createPeer({ uid: 1 });
  const node = await bus.createNode(rt);
  const to = await bus.transferHandle(rt, node, st);
  const receiver = Peer.open(rt);
  const gate = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL('./fixtures/burst-peer.js', import.meta.url), {
    workerData: { ticket: st, to, count, bytes, gate }, transferList: st.transfer as never,
  });
  t.teardown(async () => {
    Atomics.store(gate, 0, 1);
    Atomics.notify(gate, 0);
    await worker.terminate();
    await receiver.close().catch(() => undefined);
    await bus.close().catch(() => undefined);
  });
  const report = once(worker, 'message');

  // The sender's thread is blocked while the last of these arrive.
  const got: string[] = [];
  const deadline = performance.now() + 15_000;
  while (got.length < count && performance.now() < deadline) {
    const m = receiver.tryRecv();
    if (m === undefined) {
      await sleep(1);
      continue;
    }
    got.push(m.text().trimEnd());
    m.release();
  }
  Atomics.store(gate, 0, 1);
  Atomics.notify(gate, 0);
  t.is(got.length, count, 'every send arrived while the sender was blocked');
  t.deepEqual(got, Array.from({ length: got.length }, (_, i) => String(i)), 'once each, in send order');
  const [r] = (await report) as [{ ok: number; failure: string | null; opened: boolean }];
  t.true(r.opened, 'the sender was still blocked when the last message arrived');
  t.is(r.failure, null);
  t.is(r.ok, count);
}

test('a sender that blocks its thread right after a burst of sends, without yielding, still has every send delivered, in order', blockedAfterBurst, 2000, 0);

test('a burst of 64 KiB sends (four of them fill the eighth of the ring a burst may owe the bell for), the sender then blocking, delivers every send once, in order', blockedAfterBurst, 24, 65536);
