/*
 * Idle workers must never exit on their own (issue: data loss under load). Many workers
 * open a peer and idle in a pending recv() or for-await loop while the machine's cores are
 * kept busy by spinning threads, for several of the wait layer's sleep periods. None may
 * exit early; afterwards each gets exactly its one message, closes, and exits with code 0.
 * A worker whose event loop held nothing ref'd during the wait would exit with code 13.
 */
import test from 'ava';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { Bus, Peer, type PeerTicket } from '../src/index.js';
import { MAX_SLEEP_MS } from '../shared/wait.js';

const WORKERS = 160;
const MODES = ['recv', 'iterate', 'recv-then-work'] as const;
const IDLE_MS = 4 * MAX_SLEEP_MS; // several wait periods, each of which must hand over the keep-alive

interface Idler { worker: Worker; events: any[]; exitCode: number | undefined; exited: Promise<number> }

/** Threads that keep every core busy until `until` (performance.now() of this thread's clock origin is not shared, so wall time). */
function burners(untilEpochMs: number): Worker[] {
  const src = `const end = ${untilEpochMs}; while (Date.now() < end) { for (let i = 0; i < 1e5; i++); }`;
  return Array.from({ length: os.availableParallelism() }, () => new Worker(src, { eval: true }));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

test('idle workers waiting in recv() under full CPU load never exit on their own, and each gets its message', async (t) => {
  const bus = await Bus.start({});
  const idlers: Idler[] = [];
  const burning: Worker[] = [];
  let sender: Peer | undefined;
  t.teardown(async () => {
    for (const w of burning) await w.terminate();
    for (const i of idlers) await i.worker.terminate();
    await sender?.close().catch(() => undefined);
    await bus.close().catch(() => undefined);
  });

  const senderTicket = await bus.createPeer({ uid: 1 });
  sender = Peer.open(senderTicket);
  const handles: number[] = [];
  // Load from the start: workers are created, open their peers and idle while every core spins.
  const loadStart = Date.now();
  burning.push(...burners(loadStart + 60_000));
  for (let i = 0; i < WORKERS; i++) {
    const ticket: PeerTicket = await bus.createPeer({ uid: 1000 + (i % 8) });
    const node = await bus.createNode(ticket);
    handles.push(await bus.transferHandle(ticket, node, senderTicket));
    const worker = new Worker(new URL('./fixtures/idle-recv.js', import.meta.url), {
      workerData: { ticket, mode: MODES[i % MODES.length] }, transferList: ticket.transfer as never,
    });
    const idler: Idler = { worker, events: [], exitCode: undefined, exited: undefined as never };
    idler.exited = new Promise<number>((resolve) => worker.once('exit', (code) => { idler.exitCode = code; resolve(code); }));
    worker.on('message', (m) => idler.events.push(m));
    worker.on('error', (e) => idler.events.push({ type: 'error', message: String(e) }));
    idlers.push(idler);
  }
  const readyBy = Date.now() + 120_000;
  while (idlers.some((i) => !i.events.some((e) => e.type === 'ready') && i.exitCode === undefined)) {
    if (Date.now() > readyBy) break;
    await sleep(20);
  }
  // Every worker now idles under load for several sleep periods.
  await sleep(IDLE_MS);
  for (const w of burning.splice(0)) await w.terminate();
  t.log(`${WORKERS} workers started and idled under load for ${Date.now() - loadStart} ms`);

  const early = idlers.filter((i) => i.exitCode !== undefined).map((i) => i.exitCode);
  t.deepEqual(early, [], 'no idle worker exited before it was sent anything');

  for (let i = 0; i < WORKERS; i++) await sender.send(handles[i], `hello ${i}`);
  const codes = await Promise.all(idlers.map((i) => i.exited));
  t.deepEqual(codes, idlers.map(() => 0), 'each worker exits with code 0 once its peer is closed');
  for (let i = 0; i < WORKERS; i++) {
    const got = idlers[i].events.filter((e) => e.type !== 'ready');
    t.deepEqual(got, [{ type: 'got', text: `hello ${i}` }], `worker ${i} got its one message`);
  }
});
