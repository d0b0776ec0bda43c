/*
 * A peer whose bell rang is polled until IDLE_POLLS of its polls found nothing (counted
 * since the bell, not in a row: src/coordinator/bells.ts), then handed back to its bell;
 * a peer that was never polled rings with its first record although the coordinator
 * never raised its flag (src/peer/outbox.ts). The rounds must be exact, so the
 * coordinator and its peers run in this thread, driven by hand (perf/in-thread.ts), as
 * in test/runs.test.ts. The coordinator's sweep, which finds rings whose bell was
 * cleared, reads a peer's OUT ring only once the peer's control block says it published
 * (CTL_PUBLISHED): an idle peer's ring is a page nothing has touched.
 */

import test from 'ava';
import { inThreadBus } from '../perf/in-thread.js';
import { IDLE_POLLS } from '../src/coordinator/bells.js';
import { CTL_PUBLISHED, RING_HEAD, peerLayout } from '../shared/layout.js';

test('a fresh peer is polled from its first record on, and handed back to its bell after IDLE_POLLS empty polls', (t) => {
  const bus = inThreadBus();
  const limits = { messages: 256, bytes: 1 << 20 };
  const { peer: sender, id: senderId } = bus.open(1, limits);
  const { peer: receiver, id: receiverId } = bus.open(2, limits);
  t.teardown(() => bus.coordinator.closeAll());
  const to = bus.handleTo(receiverId, senderId);
  const state = bus.coordinator.peerById(senderId);
  const payload = new Uint8Array(16);
  bus.coordinator.runOnce();
  t.false(state.polled, 'a peer that has published nothing is not polled');
  for (let round = 0; round < 3; round++) {
    sender.post(to, payload);
    bus.coordinator.runOnce();
    t.true(state.polled, `round ${round}: its record rang the bell, and the coordinator polls it`);
    const m = receiver.tryRecv();
    t.truthy(m, `round ${round}: the record was delivered`);
    m?.release();
    for (let i = 0; i < IDLE_POLLS - 1; i++) bus.coordinator.runOnce();
    t.true(state.polled, `round ${round}: still polled after ${IDLE_POLLS - 1} empty polls`);
    bus.coordinator.runOnce();
    t.false(state.polled, `round ${round}: handed back to its bell after ${IDLE_POLLS} empty polls`);
  }
});

test('the sweep reads no OUT ring of a peer that has not said it published, and finds one that has though its bell was cleared', (t) => {
  const bus = inThreadBus();
  const { id } = bus.open(1, { messages: 256, bytes: 1 << 20 });
  t.teardown(() => bus.coordinator.closeAll());
  const state = bus.coordinator.peerById(id);
  // A head that says "records" with the control block silent: the sweep must not look.
  // (The OUT ring's place does not depend on the sizes: peerLayout puts it first.)
  Atomics.store(state.inI32, (peerLayout(1 << 20, 256, 0).outOffset >> 2) + RING_HEAD, 8);
  bus.coordinator.sweep();
  t.false(state.polled, 'not polled: its ring was not read');
  // What an honest first publish does before it rings; its bell bit is left cleared.
  Atomics.store(state.ctl, CTL_PUBLISHED, 1);
  bus.coordinator.sweep();
  t.true(state.polled, 'polled: the sweep read its ring once the control block said so');
});
