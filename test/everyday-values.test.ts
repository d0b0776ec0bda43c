/*
 * Values (issue 11, point 4): bytes, strings and structured-clone values round-trip
 * between peers in real workers, the message says which kind it was, bytes arrive as a
 * Uint8Array view, and a value structured clone refuses is EINVAL with nothing sent.
 */

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { Bus } from '../src/index.js';
import { Everyday, backAtMax, within, type Seen } from './fixtures/everyday-remote.js';

const test = anyTest.serial as TestFn;
const CALL_MS = 10_000;

async function pair(t: ExecutionContext) {
  const bus = await Bus.start();
  t.teardown(() => bus.close().catch(() => undefined));
  const a = await Everyday.spawn(t, bus, 1001, { nodes: ['inbox'] });
  const b = await Everyday.spawn(t, bus, 1002, { handles: { a: a.spawned.nodes.inbox } });
  return { bus, a, b, to: (await b.handles()).a };
}

test('values of every kind round-trip, and the message says which kind it was', async (t) => {
  const { bus, a, b, to } = await pair(t);
  const cases: Array<[string, unknown, string]> = [
    ['bytes', new Uint8Array([0, 1, 2, 250, 255]), 'bytes'],
    ['empty bytes', new Uint8Array(0), 'bytes'],
    ['a string', 'héllo, wörld ✓', 'string'],
    ['an empty string', '', 'string'],
    ['a number', 42.5, 'value'],
    ['a bigint', 2n ** 70n, 'value'],
    ['null', null, 'value'],
    ['undefined', undefined, 'value'],
    ['a boolean', false, 'value'],
    ['an object', { a: [1, { b: 'c' }], d: new Date(0), m: new Map([[1, 'one']]), s: new Set(['x']) }, 'value'],
    ['bytes inside an object', { bytes: new Uint8Array([9, 8, 7]) }, 'value'],
    ['an array', [1, 'two', [3]], 'value'],
  ];
  for (const [what, value, kind] of cases) {
    await within(CALL_MS, b.call('sendValue', to, value), `send ${what}`);
    const got = await within(CALL_MS, a.call<Seen>('recvValue'), `recv ${what}`);
    t.is(got.kind, kind, what);
    t.is(got.senderUid, 1002, what);
    if (value instanceof Uint8Array) {
      t.true(got.isUint8Array, `${what}: value() is a Uint8Array`);
      t.deepEqual(got.value, Array.from(value), what);
    } else {
      t.deepEqual(got.value, value, what);
    }
  }
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});

test('a value structured clone refuses is EINVAL, and nothing is sent or charged', async (t) => {
  const { bus, a, b, to } = await pair(t);
  for (const what of ['function', 'symbol']) {
    const r = await within(CALL_MS, b.call('sendUncloneable', to, what), what);
    t.like(r, { state: 'rejected', code: 'EINVAL', isBusError: true }, what);
  }
  t.is(await a.call('tryRecv'), 'undefined', 'nothing arrived');
  await backAtMax(t, bus, { 1001: 1, 1002: 1 });
});
