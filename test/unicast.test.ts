import test from 'ava';
import { BusError } from '../src/index.js';
import { TestBus } from './helpers/remote-peer.js';

test('a message sent to a remote node arrives with payload, sender uid and the receiver\'s own handle id', async (t) => {
  const tb = await TestBus.start(t);
  const a = await tb.peer(1000);
  const b = await tb.peer(2000);
  const [bNode, aHandle] = await tb.node(b, a);
  await a.send(aHandle, 'hello');
  const m = await b.recv();
  t.is(m.type, 'data');
  t.is(m.text, 'hello');
  t.is(m.senderUid, 1000);
  t.is(m.destination, bNode);
  t.false(m.continue);
  t.deepEqual(m.handles, []);
});

test('a send to an unknown handle fails with ENXIO and delivers nothing', async (t) => {
  const tb = await TestBus.start(t);
  const a = await tb.peer(1);
  const err = await t.throwsAsync(a.send(77, 'x'));
  t.true(err instanceof BusError);
  t.is((err as BusError).code, 'ENXIO');
  t.is(await a.tryRecv(), null);
});
