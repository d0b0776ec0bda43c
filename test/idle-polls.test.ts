/*
 * A polled peer is handed back to its bell after IDLE_POLLS *consecutive* empty polls
 * (src/coordinator/bells.ts): a peer that publishes every other round stays polled, and
 * so never has to ring. The rounds must be exact, so the coordinator and its peers run
 * in this thread, driven by hand (perf/in-thread.ts), as in test/runs.test.ts.
 */

import test from 'ava';
import { inThreadBus } from '../perf/in-thread.js';
import { IDLE_POLLS } from '../src/coordinator/bells.js';

test('a peer with records every other poll stays polled; one quiet for IDLE_POLLS polls is handed back to its bell', (t) => {
  const bus = inThreadBus();
  const limits = { messages: 256, bytes: 1 << 20 };
  const { peer: sender, id: senderId } = bus.open(1, limits);
  const { peer: receiver, id: receiverId } = bus.open(2, limits);
  t.teardown(() => bus.coordinator.closeAll());
  const to = bus.handleTo(receiverId, senderId);
  const state = bus.coordinator.peerById(senderId);
  const payload = new Uint8Array(16);
  let received = 0;
  for (let round = 0; round < 4 * IDLE_POLLS; round++) {
    sender.post(to, payload);
    bus.coordinator.runOnce(); // the post: a record
    t.true(state.polled, `round ${round}: polled after a poll with a record`);
    bus.coordinator.runOnce(); // nothing from the sender
    t.true(state.polled, `round ${round}: still polled after one empty poll`);
    for (let m = receiver.tryRecv(); m !== undefined; m = receiver.tryRecv()) {
      received++;
      m.release();
    }
  }
  t.is(received, 4 * IDLE_POLLS);
  for (let i = 0; i < IDLE_POLLS; i++) bus.coordinator.runOnce();
  t.false(state.polled, 'quiet for IDLE_POLLS polls: back to its bell');
});
