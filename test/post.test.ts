import test from 'ava';
import { Bus, Peer } from '../src/index.js';
import { startPostWorker } from './helpers/post-worker.js';

async function setup(t: import('ava').ExecutionContext, receiverMessages = 8) {
  // By default the receiver's user holds 8 messages: one sending uid may have 4 in flight.
  const bus = await Bus.start({ users: { 2: { messages: receiverMessages } } });
  const rt = await bus.createPeer({ uid: 2 });
  const st = await bus.createPeer({ uid: 1 });
  const node = await bus.createNode(rt);
  const to = await bus.transferHandle(rt, node, st);
  const receiver = Peer.open(rt);
  const call = startPostWorker(t, bus, st, to);
  return { receiver, call };
}

test('posts refused by the quota are exactly the last ones of the flush window, in order, all with EDQUOT', async (t) => {
  const { receiver, call } = await setup(t);
  const r = await call({ op: 'post', count: 10 });
  t.is(r.posted, 10);
  t.deepEqual(r.rejected.map((x) => x.index), [4, 5, 6, 7, 8, 9]);
  for (const x of r.rejected) {
    t.is(x.code, 'EDQUOT');
    t.is(x.resource, 'messages');
    t.is(x.uid, 2);
  }
  const got: string[] = [];
  for (let m = receiver.tryRecv(); m !== undefined; m = receiver.tryRecv()) {
    got.push(m.text());
    m.release();
  }
  t.deepEqual(got, ['0', '1', '2', '3']);
});

test('reposting the refused posts after the receiver has read delivers every message once, in order', async (t) => {
  const { receiver, call } = await setup(t);
  const got: string[] = [];
  const drain = () => {
    for (let m = receiver.tryRecv(); m !== undefined; m = receiver.tryRecv()) {
      got.push(m.text());
      m.release();
    }
  };
  let r = await call({ op: 'post', count: 20 });
  let rounds = 0;
  while (r.rejected.length > 0) {
    t.true(++rounds < 20, 'the stream makes progress each round');
    drain();
    r = await call({ op: 'retry' });
  }
  drain();
  t.deepEqual(got, Array.from({ length: 20 }, (_, i) => String(i)));
});

test('after one refused post every later post of the window is refused the same way, even ones that would pass', async (t) => {
  const { receiver, call } = await setup(t, 1024);
  const r = await call({ op: 'post', count: 10, badAt: 3 });
  t.deepEqual(r.rejected.map((x) => x.index), [3, 4, 5, 6, 7, 8, 9]);
  t.true(r.rejected.every((x) => x.code === 'ENXIO'));
  const got: string[] = [];
  for (let m = receiver.tryRecv(); m !== undefined; m = receiver.tryRecv()) {
    got.push(m.text());
    m.release();
  }
  t.deepEqual(got, ['0', '1', '2']);
  // flush() resumed the stream: the next window is attempted afresh.
  const again = await call({ op: 'post', count: 2 });
  t.deepEqual(again.rejected, []);
});
