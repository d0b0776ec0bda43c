/*
 * Bad input to every public function (issue 10, point 5): wrong types, negative and huge
 * numbers, stale handle ids, other peers' handle ids, closed peers and forged tickets.
 * Each answers with a BusError of a stable code (synchronous functions throw it, the
 * others reject with it) and changes nothing: every uid's usage, every peer's query()
 * and every queue are the same before and after, and the peers still work afterwards.
 * Peers run in input-peer workers; Bus calls and Peer.open() run in the test thread.
 */

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { Bus, BusError, Peer, type PeerTicket } from '../src/index.js';
import { MAX_DESTINATIONS, MAX_HANDLES_PER_MESSAGE } from '../shared/layout.js';
import { TestBus, within } from './helpers/remote-peer.js';
import { Remote, type Probe } from './fixtures/api-remote.js';

const test = anyTest.serial as TestFn;
const CALL_MS = 10_000;

/** Values that are not handle ids at all: EINVAL wherever a handle id is expected. */
const NOT_IDS: Array<[string, unknown]> = [
  ['a string', '1'], ['null', null], ['an object', {}], ['an array', ['1']], ['NaN', NaN], ['Infinity', Infinity],
  ['-1', -1], ['0', 0], ['-0', -0], ['1.5', 1.5], ['2^32', 2 ** 32], ['2^53', 2 ** 53], ['true', true], ['a bigint', 1n],
];

interface World {
  bus: Bus;
  a: Remote;
  b: Remote;
  peers: Remote[];
  /** a's own node, a's handle to b's node, an id a released, an id only b has. */
  aN: number;
  aB: number;
  stale: number;
  bOnly: number;
  /** A closed peer (its ticket, and the worker that closed it). */
  closed: Remote;
}

async function world(t: ExecutionContext): Promise<World> {
  const tb = await TestBus.start(t, { maxMessageBytes: 4096 });
  const a = await Remote.spawn(t, tb.bus, 4001, 'input-peer');
  const b = await Remote.spawn(t, tb.bus, 4002, 'input-peer');
  const closed = await Remote.spawn(t, tb.bus, 4003, 'input-peer');
  const aN = await a.createNode();
  const bN = await b.createNode();
  const aB = await tb.bus.transferHandle(b.ticket, bN, a.ticket);
  const bN2 = await b.createNode();
  const stale = await tb.bus.transferHandle(b.ticket, bN2, a.ticket);
  await a.releaseHandle(stale);
  for (let i = 0; i < 4; i++) await b.createNode();
  const bOnly = (await b.createNode()) as number; // an id far past any of a's
  await closed.createNode();
  await closed.close();
  // b's node-release (a let go of bN2) is not part of what the tests look at.
  await b.drain();
  return { bus: tb.bus, a, b, peers: [a, b], aN, aB, stale, bOnly, closed };
}

/** Everything a refused call must leave as it was. */
async function snapshot(w: World): Promise<unknown> {
  const out: unknown[] = [];
  for (const uid of [4001, 4002, 4003]) out.push(await w.bus.usage(uid));
  for (const p of w.peers) out.push(await p.query());
  return out;
}

async function nothingQueued(t: ExecutionContext, w: World, what: string): Promise<void> {
  for (const p of w.peers) t.is(await within(CALL_MS, p.tryRecv(), what), 'undefined', `${what}: nothing queued at uid ${p.uid}`);
}

function isCode(t: ExecutionContext, r: Probe, code: string, what: string, how?: 'sync' | 'async'): void {
  t.true(r.isBusError, `${what}: a BusError (${r.threw}: ${r.message})`);
  t.is(r.code, code, `${what}: ${r.message}`);
  t.true(r.message.length > 0, `${what}: says why`);
  if (how !== undefined) t.is(r.threw, how, `${what}: ${how === 'sync' ? 'throws' : 'rejects'}`);
}

/** Call `fn` in this thread; how it ended, like a worker's probe(). */
async function local(fn: () => unknown): Promise<Probe> {
  let r: unknown;
  try {
    r = fn();
  } catch (e) {
    return { threw: 'sync', code: (e as BusError).code ?? null, message: String((e as Error)?.message), isBusError: e instanceof BusError };
  }
  try {
    await within(CALL_MS, Promise.resolve(r), 'call');
  } catch (e) {
    return { threw: 'async', code: (e as BusError).code ?? null, message: String((e as Error)?.message), isBusError: e instanceof BusError };
  }
  return { threw: 'none', code: null, message: '', isBusError: false };
}

/** Run `cases` against a world and check that none of them changed anything. */
async function unchanged(t: ExecutionContext, w: World, what: string, cases: () => Promise<void>): Promise<void> {
  const before = await snapshot(w);
  await cases();
  t.deepEqual(await snapshot(w), before, `${what}: nothing changed`);
  await nothingQueued(t, w, what);
  // Still working: a -> b, and b's reply lands on a's own node.
  await w.a.send(w.aB, 'still works');
  t.is((await within(CALL_MS, w.b.recv(), `${what}: b recv`)).text, 'still works');
}

test('send, post and the multicast forms: bad ids, stale ids, other peers\' ids, bad data and options', async (t) => {
  const w = await world(t);
  const { a, aB, stale, bOnly } = w;
  await unchanged(t, w, 'send', async () => {
    for (const [name, v] of NOT_IDS) {
      isCode(t, await a.probe('send', v, 'x'), 'EINVAL', `send to ${name}`, 'async');
      isCode(t, await a.probe('send', [aB, v], 'x'), 'EINVAL', `multicast with ${name}`, 'async');
      isCode(t, await a.probe('send', aB, 'x', { handles: [v] }), 'EINVAL', `send carrying ${name}`, 'async');
      isCode(t, await a.probe('post', v, 'x'), 'EINVAL', `post to ${name}`, 'sync');
    }
    for (const [name, id] of [['2^32-1', 2 ** 32 - 1], ['a released id', stale], ['an id only b has', bOnly]] as const) {
      isCode(t, await a.probe('send', id, 'x'), 'ENXIO', `send to ${name}`, 'async');
      isCode(t, await a.probe('send', [aB, id], 'x'), 'ENXIO', `multicast with ${name}`, 'async');
      isCode(t, await a.probe('send', aB, 'x', { handles: [id] }), 'ENXIO', `send carrying ${name}`, 'async');
      const p = await a.call('postFlush', [id, 'x']);
      t.deepEqual(p, { threw: 'none', code: null, rejected: ['ENXIO'] }, `post to ${name}: flush() reports ENXIO`);
      const partial = await a.call('send', [aB, id], 'x', { partial: true }).catch((e: BusError) => e);
      t.true(partial instanceof BusError && partial.code === 'ENXIO', `partial multicast with ${name}: ENXIO, nothing delivered (${JSON.stringify(partial)} ${String(partial)})`);
    }
    // Numbers, null, objects, arrays, other typed arrays and bigints are values (everyday-values
    // test); what structured clone through node:v8 cannot carry is refused.
    for (const [name, data] of [['a SharedArrayBuffer', new SharedArrayBuffer(8)], ['an object holding one', { s: new SharedArrayBuffer(8) }]] as const) {
      isCode(t, await a.probe('send', aB, data), 'EINVAL', `data ${name}`, 'async');
      isCode(t, await a.probe('post', aB, data), 'EINVAL', `post data ${name}`, 'sync');
    }
    isCode(t, await a.probe('send', aB, 'x'.repeat(4097)), 'EMSGSIZE', 'a payload over maxMessageBytes', 'async');
    isCode(t, await a.probe('post', aB, new Uint8Array(1 << 20)), 'EMSGSIZE', 'post of 1 MiB', 'sync');
    for (const [name, opts] of [['a number', 5], ['a string', 'x'], ['handles a string', { handles: 'x' }],
      ['partial a string', { partial: 'yes' }], ['too many handles', { handles: new Array(MAX_HANDLES_PER_MESSAGE + 1).fill(aB) }]] as const) {
      isCode(t, await a.probe('send', aB, 'x', opts), 'EINVAL', `options ${name}`, 'async');
      isCode(t, await a.probe('post', aB, 'x', opts), 'EINVAL', `post options ${name}`, 'sync');
    }
    isCode(t, await a.probe('send', new Array(MAX_DESTINATIONS + 1).fill(aB), 'x'), 'EINVAL', 'too many destinations', 'async');
    isCode(t, await a.probe('send', [aB, aB], 'x'), 'ENOTUNIQ', 'a destination twice', 'async');
  });
});

test('releaseHandle, destroyNodes, recv, recvSync and release: bad, stale and foreign ids, bad options', async (t) => {
  const w = await world(t);
  const { a, aN, aB, stale, bOnly } = w;
  await unchanged(t, w, 'handles', async () => {
    for (const [name, v] of NOT_IDS) {
      isCode(t, await a.probe('releaseHandle', v), 'EINVAL', `releaseHandle(${name})`, 'sync');
      isCode(t, await a.probe('destroyNodes', [v]), 'EINVAL', `destroyNodes([${name}])`, 'async');
    }
    for (const [name, id] of [['2^32-1', 2 ** 32 - 1], ['a released id', stale], ['an id only b has', bOnly]] as const) {
      isCode(t, await a.probe('releaseHandle', id), 'ENXIO', `releaseHandle(${name})`, 'sync');
      isCode(t, await a.probe('destroyNodes', [id]), 'ENXIO', `destroyNodes([${name}])`, 'async');
    }
    isCode(t, await a.probe('releaseHandle', aN), 'EBUSY', 'releaseHandle of the owner\'s last reference', 'sync');
    isCode(t, await a.probe('destroyNodes', [aB]), 'EREMOTE', 'destroyNodes of another peer\'s node', 'async');
    isCode(t, await a.probe('destroyNodes', [aN, aN]), 'ENOTUNIQ', 'destroyNodes naming a node twice', 'async');
    isCode(t, await a.probe('destroyNodes', aN), 'EINVAL', 'destroyNodes(not an array)', 'async');
    isCode(t, await a.probe('destroyNodes', new Array(MAX_DESTINATIONS + 1).fill(aN)), 'EINVAL', 'destroyNodes of too many', 'async');
    for (const [name, v] of [['NaN', NaN], ['-1', -1], ['a string', '5'], ['null', null]] as const) {
      isCode(t, await a.probe('recvSync', v), 'EINVAL', `recvSync(${name})`, 'sync');
    }
    for (const [name, v] of [['a number', 5], ['a string', 'x'], ['signal a string', { signal: 'x' }], ['signal an object', { signal: {} }]] as const) {
      isCode(t, await a.probe('recv', v), 'EINVAL', `recv(${name})`, 'async');
    }
  });
  // A message released twice (this one goes through the quota and back, so it is outside `unchanged`).
  const twice = await a.call('releaseTwice', aN);
  t.is(twice?.code, 'ENXIO', 'release() a second time');
  t.deepEqual((await w.bus.usage(4001)).remaining.messages, (await w.bus.usage(4001)).max.messages, 'the message was given back once');
});

test('a closed peer answers every call with ESHUTDOWN', async (t) => {
  const w = await world(t);
  const c = w.closed;
  await unchanged(t, w, 'closed peer', async () => {
    for (const [method, args, how] of [
      ['send', [1, 'x'], 'async'], ['post', [1, 'x'], 'sync'], ['flush', [], 'async'], ['createNode', [], 'sync'],
      ['releaseHandle', [1], 'sync'], ['destroyNodes', [[1]], 'async'], ['query', [], 'async'], ['recv', [], 'async'],
      ['tryRecv', [], 'sync'], ['recvSync', [0], 'sync'], ['close', [], 'async'],
    ] as const) {
      isCode(t, await c.probe(method, ...args), 'ESHUTDOWN', `${method} on a closed peer`, how);
    }
    isCode(t, await local(() => w.bus.createNode(c.ticket)), 'ESHUTDOWN', 'bus.createNode for a closed peer', 'async');
    isCode(t, await local(() => w.bus.transferHandle(w.a.ticket, w.aN, c.ticket)), 'ESHUTDOWN', 'transferHandle to a closed peer', 'async');
    isCode(t, await local(() => w.bus.transferHandle(c.ticket, 1, w.a.ticket)), 'ESHUTDOWN', 'transferHandle from a closed peer', 'async');
  });
});

/** Tickets that are not what createPeer() returned. */
function forgeries(real: PeerTicket): Array<[string, unknown]> {
  return [
    ['undefined', undefined], ['null', null], ['a number', 7], ['an empty object', {}],
    ['another kind', { ...real, kind: 'other' }],
    ['no inSab', { ...real, inSab: undefined }],
    ['an ArrayBuffer for the peer\'s buffer', { ...real, inSab: new ArrayBuffer(real.inSab.byteLength) }],
    ['a short IN buffer', { ...real, inSab: new SharedArrayBuffer(64) }],
    ['an OUT ring size that is not a power of two', { ...real, outRingBytes: real.outRingBytes - 8 }],
    ['an OUT ring out of place', { ...real, outOffset: real.outOffset + 8 }],
    ['an OUT ring that overlaps the verdict ring', { ...real, outRingBytes: real.outRingBytes * 2 }],
    ['descriptor slots that are not a power of two', { ...real, descriptorSlots: real.descriptorSlots - 1 }],
    ['a descriptor offset out of place', { ...real, descriptorOffset: real.descriptorOffset + 8 }],
    ['a negative peer id', { ...real, peerId: -1 }],
    ['a fractional uid', { ...real, uid: 1.5 }],
    ['no doorbell', { ...real, doorbell: undefined }],
    ['a port that is not a MessagePort', { ...real, port: {} }],
  ];
}

test('forged tickets: Peer.open, bus.createNode and bus.transferHandle refuse them with EINVAL', async (t) => {
  const w = await world(t);
  const spare = await w.bus.createPeer({ uid: 4004 });
  await unchanged(t, w, 'forged tickets', async () => {
    for (const [name, f] of forgeries(spare)) {
      isCode(t, await local(() => Peer.open(f as PeerTicket)), 'EINVAL', `Peer.open(${name})`, 'sync');
      isCode(t, await local(() => w.bus.createNode(f as PeerTicket)), 'EINVAL', `bus.createNode(${name})`, 'async');
      isCode(t, await local(() => w.bus.transferHandle(w.a.ticket, w.aN, f as PeerTicket)), 'EINVAL', `transferHandle to ${name}`, 'async');
      isCode(t, await local(() => w.bus.transferHandle(f as PeerTicket, 1, w.a.ticket)), 'EINVAL', `transferHandle from ${name}`, 'async');
    }
    // A well-formed copy naming a peer that does not exist.
    isCode(t, await local(() => w.bus.createNode({ ...spare, peerId: 99_999 })), 'ESHUTDOWN', 'createNode for an unknown peer id', 'async');
    // A ticket opened once cannot be opened again.
    isCode(t, await local(() => Peer.open(w.a.ticket)), 'EINVAL', 'Peer.open of a ticket already opened', 'sync');
  });
  // The spare ticket was not consumed by any of the forgeries.
  const p = Peer.open(spare);
  t.true(p.isOpen);
  await p.close();
});

test('the owner\'s calls: wrong types, negative and huge numbers, bad handles', async (t) => {
  const w = await world(t);
  const { bus, a, b, aN, stale } = w;
  await unchanged(t, w, 'owner', async () => {
    for (const [name, opts] of [
      ['null', null], ['a string', 'x'], ['userLimits a string', { userLimits: 'x' }],
      ['a negative limit', { userLimits: { messages: -1 } }], ['a limit of 2^31', { userLimits: { messages: 2 ** 31 } }],
      ['a fractional limit', { peerLimits: { bytes: 1.5 } }], ['an unknown limit', { userLimits: { bogus: 1 } }],
      ['an unknown quota rule', { quota: 'fair' }], ['maxMessageBytes -1', { maxMessageBytes: -1 }],
      ['maxMessageBytes 2^40', { maxMessageBytes: 2 ** 40 }], ['maxMessageBytes a string', { maxMessageBytes: '1' }],
      ['users with a non-numeric uid', { users: { x: {} } }], ['users with a negative uid', { users: { '-1': {} } }],
    ] as const) {
      isCode(t, await local(() => Bus.start(opts as never)), 'EINVAL', `Bus.start(${name})`, 'async');
    }
    for (const [name, opts] of [
      ['undefined', undefined], ['null', null], ['{}', {}], ['uid -1', { uid: -1 }], ['uid 1.5', { uid: 1.5 }],
      ['uid a string', { uid: '1' }], ['uid 2^53', { uid: 2 ** 53 }], ['uid NaN', { uid: NaN }],
      ['a negative limit', { uid: 1, limits: { messages: -1 } }], ['limits a string', { uid: 1, limits: 'x' }],
      ['a huge limit', { uid: 1, limits: { messages: 2 ** 40 } }],
    ] as const) {
      isCode(t, await local(() => bus.createPeer(opts as never)), 'EINVAL', `createPeer(${name})`, 'async');
    }
    for (const [name, uid] of [['-1', -1], ['1.5', 1.5], ['a string', '1'], ['null', null], ['NaN', NaN], ['2^53', 2 ** 53]] as const) {
      isCode(t, await local(() => bus.usage(uid as never)), 'EINVAL', `usage(${name})`, 'async');
    }
    for (const [name, h] of NOT_IDS) {
      isCode(t, await local(() => bus.transferHandle(a.ticket, h as never, b.ticket)), 'EINVAL', `transferHandle of ${name}`, 'async');
    }
    for (const [name, h] of [['2^32-1', 2 ** 32 - 1], ['a released id', stale], ['an id only b has', w.bOnly]] as const) {
      isCode(t, await local(() => bus.transferHandle(a.ticket, h, b.ticket)), 'ENXIO', `transferHandle of ${name}`, 'async');
    }
  });
  t.true(aN > 0);
});
