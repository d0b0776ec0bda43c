// Child-process entry for idle-peer-memory: imports a system module, runs its
// once-per-process setup if it has one (`<export>Setup`, before the first reading),
// asks its idle-peer export for N idle endpoints, and prints the RSS/heap delta and
// the time the creation took as JSON.
// Run by perf/drivers.ts with --expose-gc so both readings follow a full GC.
// Usage: node --expose-gc idle-child.js <moduleUrl> <exportName> <peers>

import type { IdlePeersFactory, IdlePeersSetup } from '../drivers.js';

/** Let the allocator and finalizers settle between GC and reading RSS. */
const SETTLE_MS = 15;

const [moduleUrl, exportName, peersArg] = process.argv.slice(2);
const peers = Number(peersArg);
const gc = (globalThis as { gc?: () => void }).gc;
if (!moduleUrl || !exportName || !(peers > 0) || !gc) {
  console.error('usage: node --expose-gc idle-child.js <moduleUrl> <exportName> <peers>');
  process.exit(2);
}

async function settled(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 2; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, SETTLE_MS));
  }
  return process.memoryUsage();
}

const mod = (await import(moduleUrl)) as Record<string, unknown>;
const factory = mod[exportName] as IdlePeersFactory | undefined;
if (typeof factory !== 'function') {
  console.error(`${moduleUrl} does not export ${exportName}`);
  process.exit(2);
}
const setup = mod[`${exportName}Setup`] as IdlePeersSetup | undefined;
const shared = typeof setup === 'function' ? await setup() : undefined;
const before = await settled();
const started = performance.now();
const handle = await factory(peers, shared);
const createMs = performance.now() - started;
const after = await settled();
console.log(
  JSON.stringify({
    peers,
    rssBytes: after.rss - before.rss,
    heapBytes: after.heapUsed - before.heapUsed,
    extra: { createMs, ...handle.extra },
  }),
);
await handle.close?.();
process.exit(0);
