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
  return { bus, receiver, call };
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

test('posts behind a refused one are refused in the sender, without costing the coordinator a turn each, and reported the same way', async (t) => {
  const { bus, receiver, call } = await setup(t);
  // Far more than the OUT ring holds: the sender blocks for space, learns of the refusal
  // meanwhile, and refuses the rest itself.
  const count = 20_000;
  const r = await call({ op: 'post', count });
  t.is(r.posted, count);
  t.is(r.rejected.length, count - 4);
  t.true(r.rejected.every((x, i) => x.index === 4 + i && x.code === 'EDQUOT' && x.resource === 'messages' && x.uid === 2),
    'the refused posts are the last ones, in order, each EDQUOT on uid 2\'s messages');
  const byCoordinator = (await bus.stats()).byUid[1]!.refused.EDQUOT;
  t.log(`the coordinator refused ${byCoordinator} of the ${r.rejected.length} posts itself`);
  t.true(byCoordinator < r.rejected.length, `the coordinator refused ${byCoordinator} of the ${r.rejected.length} posts itself`);
  // After the flush the stream is judged afresh: once the receiver has read, a repost goes through.
  for (let m = receiver.tryRecv(); m !== undefined; m = receiver.tryRecv()) m.release();
  // The releases travel as a record of the receiver's, which the coordinator may take after
  // the sender's next posts (nothing orders two peers' rings): wait until they count.
  for (let i = 0; (await bus.usage(2)).remaining.messages !== 8; i++) {
    if (i === 1000) return t.fail('the receiver\'s releases did not reach the coordinator within 5 s');
    await new Promise((r) => setTimeout(r, 5));
  }
  const again = await call({ op: 'post', count: 4 });
  t.deepEqual(again.rejected, []);
});
