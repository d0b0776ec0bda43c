/*
 * An idle peer costs no page of its rings buffer (shared/layout.ts): the words written
 * when a peer is created and opened live in its control block, a small buffer of its
 * own, and the coordinator does not raise a new peer's OUT flag. In exchange a peer's
 * first publish rings the doorbell whatever that flag says (src/peer/outbox.ts), so
 * its first message is not left for the coordinator's periodic sweep to find.
 */

import test from 'ava';
import { TestBus } from './helpers/remote-peer.js';
import { BELL_COUNTER, CTL_BELL, CTL_OPENED } from '../shared/layout.js';

function firstNonZero(sab: SharedArrayBuffer): number {
  const words = new Int32Array(sab);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return 4 * i;
  return -1;
}

test('a peer created with a node and opened in its worker has written nothing in its rings buffer', async (t) => {
  const tb = await TestBus.start(t);
  // A few, so that some have bell index 0 and some not: any bell word written would show.
  for (let i = 0; i < 3; i++) {
    const p = await tb.peer(500 + i);
    await tb.bus.createNode(p.ticket);
    t.true(await p.isOpen(), `peer ${i} is open`);
    const ctl = new Int32Array(p.ticket.ctlSab);
    t.not(Atomics.load(ctl, CTL_OPENED), 0, `peer ${i}: its control block says it was opened`);
    t.is(Atomics.load(ctl, CTL_BELL), i, `peer ${i}: its bell is in its control block`);
    t.is(firstNonZero(p.ticket.inSab), -1, `peer ${i}: every byte of its rings buffer is still zero`);
  }
});

test('a fresh peer rings the doorbell with its first publish, though the coordinator never raised its flag', async (t) => {
  const tb = await TestBus.start(t);
  const sender = await tb.peer(600);
  const receiver = await tb.peer(601);
  const [, to] = await tb.node(receiver, sender);
  const doorbell = new Int32Array(sender.ticket.doorbell);
  const before = Atomics.load(doorbell, BELL_COUNTER);
  await sender.send(to!, 'first');
  // Nothing else rings while the test waits for the send's verdict: only the first publish can have counted.
  t.true(Atomics.load(doorbell, BELL_COUNTER) !== before, 'the doorbell counter moved');
  const m = await receiver.recv({ timeoutMs: 5000 });
  t.is(m.text, 'first');
});
