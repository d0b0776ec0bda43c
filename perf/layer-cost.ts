/*
 * What the everyday layer costs: request/reply and publish through the layer's API,
 * against the primitive round trip and the primitive partial multicast, in the same run.
 *
 *   node dist/perf/layer-cost.js [--quick] [--only request-reply|pubsub] [--json FILE]
 *
 * Workloads (64-byte Uint8Array payloads; one request in flight; every peer in its own
 * worker made by bus.spawn):
 *   request-reply   primitive: client send() to the service's node, the service send()s
 *                   back to the client's inbox, the client recv()s. layer: client
 *                   request(), the service msg.reply(). Figure: microseconds per round trip.
 *   pubsub          primitive: the publisher send(handles, data, { partial: true }) to 8
 *                   subscriber nodes. layer: topic.publish() to 8 subscriptions. Each
 *                   publish is awaited; subscribers (one uid each, the same in both
 *                   forms) read and release everything. The layer's publisher also
 *                   reads its inbox for subscriptions, as a real one does; nothing
 *                   arrives there while a batch runs. Figure: microseconds per publish.
 * Both forms of a workload are set up at once, each on its own bus, and after a warm-up
 * their timed batches alternate in pairs (see measure()). Reported: the median of each
 * form's batches, and the layer's overhead as the median over pairs of the pair's ratio
 * (target: at most 20 %). Two figures: wall microseconds per operation, and the CPU time
 * of the whole process (all threads) per operation.
 *
 * Standalone: this file is both the driver (main thread) and the workers (by role).
 */

import { isMainThread, parentPort, workerData, type Worker } from 'node:worker_threads';
import { writeFileSync } from 'node:fs';
import { Bus, Peer, type NodeRef, type Spawned } from '../src/index.js';

const PAYLOAD = new Uint8Array(64).fill(7);
const SUBSCRIBERS = 8;

type Role = 'service-raw' | 'service-layer' | 'client-raw' | 'client-layer' | 'sub-raw' | 'sub-layer' | 'pub-raw' | 'pub-layer';


// ---- workers ---------------------------------------------------------------------------

/**
 * A message from the driver: `ping` (answered with { ready } once the role is set up:
 * messages queue on the worker's port until it listens, so none is lost), or a batch of
 * `n` operations; `to` names the target when it could not be given at spawn.
 */
interface Batch { n: number; to?: number; ping?: true }

/** Answer pings from now on (the role is ready). */
function ready(port: import('node:worker_threads').MessagePort): void {
  port.on('message', (m: Batch) => { if (m.ping) port.postMessage({ ready: true }); });
}

async function worker(): Promise<void> {
  const { role } = workerData as { role: Role };
  const peer = Peer.open();
  const port = parentPort!;
  const h = peer.handles;
  switch (role) {
    case 'service-raw':
      for await (const m of peer) {
        if (m.type !== 'data') continue;
        m.release();
        await peer.send(h.client, PAYLOAD);
      }
      return;
    case 'service-layer':
      for await (const m of peer) {
        m.release();
        if (m.isRequest) await m.reply(PAYLOAD);
      }
      return;
    case 'client-raw':
    case 'client-layer': {
      const layer = role === 'client-layer';
      port.on('message', async ({ n, to, ping }: Batch) => {
        if (ping) return;
        const svc = to ?? h.svc;
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          if (layer) {
            (await peer.request(svc, PAYLOAD)).release();
          } else {
            await peer.send(svc, PAYLOAD);
            (await peer.recv()).release();
          }
        }
        port.postMessage({ us: ((performance.now() - t0) * 1000) / n });
      });
      ready(port);
      return;
    }
    case 'sub-raw':
      ready(port);
      for await (const m of peer) m.release();
      return;
    case 'sub-layer': {
      const sub = await peer.subscribe(h.pub, 'hi');
      ready(port);
      for await (const m of sub) m.release();
      return;
    }
    case 'pub-raw':
    case 'pub-layer': {
      const layer = role === 'pub-layer';
      const topic = peer.topic();
      if (layer) {
        void (async () => {
          for await (const m of peer) {
            if (m.isSubscribe) topic.add(m);
            m.release();
          }
        })();
      }
      const dests = Object.keys(h).filter((k) => k.startsWith('sub')).map((k) => h[k]);
      port.on('message', async ({ n, ping }: Batch) => {
        if (ping) return;
        if (n === 0) {
          port.postMessage({ size: layer ? topic.size : dests.length });
          return;
        }
        let delivered = 0;
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          if (layer) delivered += (await topic.publish(PAYLOAD)).delivered;
          else delivered += (await peer.send(dests, PAYLOAD, { partial: true })).delivered.length;
        }
        port.postMessage({ us: ((performance.now() - t0) * 1000) / n, delivered: delivered / n });
      });
      ready(port);
      return;
    }
  }
}

// ---- driver ----------------------------------------------------------------------------

/** The next message from `w` that has `key`. */
function next<T>(w: Worker, key: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const on = (m: Record<string, unknown>) => {
      if (!(key in m)) return;
      w.off('message', on);
      w.off('error', reject);
      resolve(m as T);
    };
    w.on('message', on);
    w.once('error', reject);
  });
}

const SELF = new URL(import.meta.url);

/** Until the worker's role is set up. */
function isReady(s: Spawned): Promise<unknown> {
  s.worker.postMessage({ ping: true });
  return next(s.worker, 'ready');
}

async function spawn(bus: Bus, uid: number, role: Role, opts: { nodes?: string[]; handles?: Record<string, NodeRef> } = {}): Promise<Spawned> {
  return bus.spawn(SELF, { uid, workerData: { role }, ...opts, name: role });
}

/** The peers of one form of one workload: `driver` runs the timed batches; `to` is sent with each. */
interface Setup { driver: Spawned; all: Spawned[]; to?: number }

async function reqrep(bus: Bus, layer: boolean): Promise<Setup> {
  if (layer) {
    const svc = await spawn(bus, 100, 'service-layer', { nodes: ['rpc'] });
    const client = await spawn(bus, 200, 'client-layer', { handles: { svc: svc.nodes.rpc } });
    await isReady(client);
    return { driver: client, all: [svc, client] };
  }
  // Each side holds the other's node: the client's inbox first, the service's node handed over after.
  const client = await spawn(bus, 200, 'client-raw', { nodes: ['inbox'] });
  await isReady(client);
  const svc = await spawn(bus, 100, 'service-raw', { nodes: ['rpc'], handles: { client: client.nodes.inbox } });
  const to = await bus.transferHandle(svc.ticket, svc.nodes.rpc, client.ticket);
  return { driver: client, all: [svc, client], to };
}

async function pubsub(bus: Bus, layer: boolean): Promise<Setup> {
  const subs: Spawned[] = [];
  if (layer) {
    const pub = await spawn(bus, 100, 'pub-layer', { nodes: ['events'] });
    await isReady(pub);
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const s = await spawn(bus, 200 + i, 'sub-layer', { handles: { pub: pub.nodes.events } });
      await isReady(s);
      subs.push(s);
    }
    for (;;) {
      pub.worker.postMessage({ n: 0 });
      if ((await next<{ size: number }>(pub.worker, 'size')).size === SUBSCRIBERS) break;
    }
    return { driver: pub, all: [pub, ...subs] };
  }
  const handles: Record<string, NodeRef> = {};
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const s = await spawn(bus, 200 + i, 'sub-raw', { nodes: ['inbox'] });
    await isReady(s);
    subs.push(s);
    handles[`sub${i}`] = s.nodes.inbox;
  }
  const pub = await spawn(bus, 100, 'pub-raw', { handles });
  await isReady(pub);
  return { driver: pub, all: [pub, ...subs] };
}

/**
 * One timed batch: wall microseconds per operation, the CPU time of the whole process per
 * operation, and (pubsub) the mean subscribers reached per publish.
 */
interface Sample { us: number; cpuUs: number; delivered?: number }

/** One form of a workload, set up on its own bus. */
interface Form { bus: Bus; setup: Setup }

async function open(make: (bus: Bus) => Promise<Setup>): Promise<Form> {
  const bus = await Bus.start();
  return { bus, setup: await make(bus) };
}

async function shut(f: Form): Promise<void> {
  await Promise.all(f.setup.all.map((s) => s.worker.terminate()));
  await f.bus.close();
}

/**
 * One batch of `ops` operations. The process's CPU time (every thread: the peers, both
 * coordinators, this idle driver; the other form's threads sleep meanwhile) is read
 * around it: on a loaded machine it moves far less than the wall time.
 */
async function batch(f: Form, ops: number): Promise<Sample> {
  const { driver, to } = f.setup;
  const c0 = process.cpuUsage();
  driver.worker.postMessage({ n: ops, to });
  const { us, delivered } = await next<{ us: number; delivered?: number }>(driver.worker, 'us');
  const c = process.cpuUsage(c0);
  return { us, cpuUs: (c.user + c.system) / ops, delivered };
}

/**
 * Both forms live at once, and their timed batches alternate (primitive, layer, layer,
 * primitive, ...), so that each pair of batches sees the same machine: the layer's
 * overhead is the median of the pairs' ratios, which a load that changes from one
 * second to the next disturbs far less than a ratio of two separate runs' medians.
 */
async function measure(make: (bus: Bus, layer: boolean) => Promise<Setup>, ops: number, pairs: number): Promise<{ prim: Sample[]; lay: Sample[] }> {
  const forms: Form[] = [];
  const prim: Sample[] = [];
  const lay: Sample[] = [];
  try {
    forms.push(await open((bus) => make(bus, false)));
    forms.push(await open((bus) => make(bus, true)));
    for (const f of forms) await batch(f, Math.max(10, ops >> 2)); // warm-up
    for (let r = 0; r < pairs; r++) {
      if (r % 2 === 0) {
        prim.push(await batch(forms[0], ops));
        lay.push(await batch(forms[1], ops));
      } else {
        lay.push(await batch(forms[1], ops));
        prim.push(await batch(forms[0], ops));
      }
    }
  } finally {
    for (const f of forms) await shut(f);
  }
  return { prim, lay };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The median over pairs of the layer's overhead in percent. */
function overhead(prim: number[], lay: number[]): number {
  return median(prim.map((p, i) => ((lay[i] - p) / p) * 100));
}

interface Row {
  workload: string;
  primitiveUs: number; layerUs: number; overheadPct: number;
  primitiveCpuUs: number; layerCpuUs: number; cpuOverheadPct: number;
  primitiveRuns: Sample[]; layerRuns: Sample[];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const jsonAt = args.indexOf('--json');
  const onlyAt = args.indexOf('--only');
  const only = onlyAt >= 0 ? args[onlyAt + 1] : undefined;
  const ops = quick ? 500 : 2000;
  const pairs = quick ? 4 : 12;
  const rows: Row[] = [];
  for (const [workload, make] of [['request-reply', reqrep], ['pubsub', pubsub]] as const) {
    if (only !== undefined && only !== workload) continue;
    const { prim, lay } = await measure(make, ops, pairs);
    const us = (xs: Sample[]) => xs.map((x) => x.us);
    const cpu = (xs: Sample[]) => xs.map((x) => x.cpuUs);
    rows.push({
      workload,
      primitiveUs: median(us(prim)), layerUs: median(us(lay)), overheadPct: overhead(us(prim), us(lay)),
      primitiveCpuUs: median(cpu(prim)), layerCpuUs: median(cpu(lay)), cpuOverheadPct: overhead(cpu(prim), cpu(lay)),
      primitiveRuns: prim, layerRuns: lay,
    });
  }
  console.log('workload        primitive us/op   layer us/op   layer overhead   primitive cpu-us/op   layer cpu-us/op   cpu overhead');
  const pct = (x: number) => (x.toFixed(1) + ' %').padStart(17);
  for (const r of rows) {
    console.log(`${r.workload.padEnd(16)}${r.primitiveUs.toFixed(2).padStart(15)}${r.layerUs.toFixed(2).padStart(14)}${pct(r.overheadPct)}` +
      `${r.primitiveCpuUs.toFixed(2).padStart(22)}${r.layerCpuUs.toFixed(2).padStart(18)}${pct(r.cpuOverheadPct)}`);
  }
  // A refused destination costs less than a delivered one: both forms must reach every subscriber.
  for (const r of rows) {
    const short = [...r.primitiveRuns, ...r.layerRuns].filter((x) => x.delivered !== undefined && x.delivered < SUBSCRIBERS);
    if (short.length > 0) console.log(`${r.workload}: ${short.length} batches reached fewer than ${SUBSCRIBERS} subscribers per publish: not like with like`);
  }
  if (jsonAt >= 0) writeFileSync(args[jsonAt + 1], JSON.stringify({ ops, pairs, rows }, null, 2));
}

if (isMainThread) await main();
else await worker();
