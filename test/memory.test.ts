/*
 * Dead peers' shared memory comes back without anyone forcing a garbage collection
 * (issue 10, point 5: the soak's RSS grew by each client that came and went).
 *
 * A peer's SharedArrayBuffers are freed when every thread has collected its last
 * reference; in the owner thread those are its tickets and its peer registry. V8 gives
 * shared memory no weight in deciding when to collect, and an owner that allocates
 * little may never run a full collection: its tickets, once old enough, would keep every
 * dead peer's buffers mapped. src/memory-weight.ts gives them weight.
 *
 * The test makes the owner's tickets old (it allocates short-lived garbage while each
 * peer lives, so the young generation is collected a few times and the ticket is
 * promoted), lets a real worker open, use and close each peer, drops the ticket, and
 * counts with a FinalizationRegistry how many of the owner's IN buffer objects were
 * collected. Nothing in the test calls gc(): it runs without --expose-gc.
 */

import test from 'ava';
import { Worker } from 'node:worker_threads';
import { execFile } from 'node:child_process';
import { Bus } from '../src/index.js';
import { within } from './helpers/remote-peer.js';

const PEERS = 48;
const WAIT = 20_000;

/** Short-lived garbage: enough to run a few young-generation collections, nothing survives. */
function churnYoungGeneration(): number {
  let sum = 0;
  for (let i = 0; i < 400_000; i++) sum += [i, i + 1, i + 2].length;
  return sum;
}

test('closed peers\' buffers are collected in the owner thread with no forced GC', async (t) => {
  t.is(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'the test must not be able to force a collection');
  // 4 MiB of pool per peer: each peer reserves a few MiB of shared memory.
  const bus = await Bus.start({ userLimits: { messages: 1024, bytes: 4 << 20 } });
  const worker = new Worker(new URL('./fixtures/churn-peer.js', import.meta.url));
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  t.teardown(async () => {
    await worker.terminate();
    await bus.close().catch(() => undefined);
  });
  let collected = 0;
  const registry = new FinalizationRegistry(() => { collected++; });
  let reserved = 0;
  for (let i = 0; i < PEERS; i++) {
    const closed = new Promise<string>((resolve) => worker.once('message', resolve));
    await (async () => {
      // In its own scope, so that nothing of the ticket outlives this peer.
      const ticket = await bus.createPeer({ uid: 7000 + (i % 4) });
      reserved += ticket.inSab.byteLength;
      registry.register(ticket.inSab, i);
      churnYoungGeneration();
      worker.postMessage({ ticket }, ticket.transfer as never);
      churnYoungGeneration();
    })();
    t.is(await within(WAIT, closed, `peer ${i} closed`), 'closed');
  }
  // Finalizers run as tasks after a collection; give them a moment (bounded).
  for (let i = 0; i < 50 && collected < PEERS / 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.log(`${PEERS} peers, ${(reserved / 2 ** 20).toFixed(0)} MiB of shared memory reserved in all; `
    + `the owner collected ${collected} of their IN buffers`);
  // The registry keeps the newest peers until its next pass, and the newest garbage waits
  // for the next collection; the point is that most of them are gone.
  t.true(collected >= PEERS / 2, `only ${collected} of ${PEERS} dead peers' buffers were collected`);
  worker.postMessage('stop');
  t.is(await within(WAIT, exited, 'churn worker exit'), 0);
  t.deepEqual((await bus.usage(7000)).shares, {});
});

/**
 * A plain SharedArrayBuffer comes from malloc, and once one of a peer buffer's size has
 * been freed, glibc serves later ones from its heap and clears them: peers made after
 * others died cost up to their whole buffer in RSS however idle (640 MiB more over these
 * rounds with plain buffers, 1-2 MiB with growable ones). A peer's buffer is a growable one of
 * fixed size, which V8 maps itself (src/coordinator/pool.ts, mappedBuffer).
 */
test('peers made after others died cost what the first ones did: RSS stays flat over rounds of 100 peers created, opened and closed', async (t) => {
  const ROUNDS = 8;
  const script = new URL('./fixtures/churn-rounds.js', import.meta.url).pathname;
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--expose-gc', script, String(ROUNDS)], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`churn-rounds failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
  const { rss } = JSON.parse(out) as { rss: number[] };
  t.is(rss.length, ROUNDS);
  const mib = rss.map((b) => +(b / 2 ** 20).toFixed(1));
  t.log(`RSS after each round (MiB): ${mib.join(' ')}`);
  // From the second round on, 100 more peers whose buffers were each cleared would add
  // about 300 MiB per round; their one page and some heap, a few MiB in all.
  const growth = rss[ROUNDS - 1] - rss[1];
  t.true(growth < 64 * 2 ** 20, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB over rounds 2-${ROUNDS}`);
});
