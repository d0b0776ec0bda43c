// Benchmark CLI: runs every selected (workload, system) pair in this one
// process, so threadbus and its alternatives are measured side by side on the
// same machine state, then prints a table and optionally writes JSON.
//
//   node dist/perf/bench.js [--quick] [--json FILE] [--html FILE] [--only w1,w2] [--systems s1,s2] [--verbose]

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  FULL_TUNABLES,
  QUICK_TUNABLES,
  WORKLOADS,
  measure,
  measureSide,
  sideBySide,
  type BenchContext,
  type BenchSystem,
  type Result,
  type WorkloadName,
} from './harness.js';
import { HostPool } from './pool.js';
import { bytes, si, textTable, us } from '../src/cli/format.js';
import { machine } from '../src/cli/report/page.js';
import { resultsPage } from './results-page.js';

interface SystemEntry {
  readonly name: string;
  /** Lazy, so one system failing to import cannot take the others down. */
  load(): Promise<BenchSystem>;
}

// The system registry: order here is run order and table order.
// To add threadbus, create perf/systems/threadbus.ts exporting
// `system: BenchSystem` and add its entry at the top of this list.
export const SYSTEMS: readonly SystemEntry[] = [
  { name: 'threadbus', load: async () => (await import('./systems/threadbus.js')).system },
  { name: 'messageport', load: async () => (await import('./systems/messageport.js')).system },
  { name: 'messageport-transfer', load: async () => (await import('./systems/messageport-transfer.js')).system },
  { name: 'broadcastchannel', load: async () => (await import('./systems/broadcastchannel.js')).system },
  { name: 'sab-ring', load: async () => (await import('./systems/sab-ring.js')).system },
  { name: 'piscina', load: async () => (await import('./systems/piscina.js')).system },
];

const USAGE = `usage: node dist/perf/bench.js [--quick] [--json FILE] [--html FILE] [--only workload,...] [--systems system,...] [--verbose]
  workloads: ${WORKLOADS.join(', ')}
  systems:   ${SYSTEMS.map((s) => s.name).join(', ')}`;

function list(arg: string | undefined, allowed: readonly string[], what: string): string[] | null {
  if (arg === undefined) return null;
  const names = arg.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !allowed.includes(n));
  if (bad.length) throw new Error(`unknown ${what}: ${bad.join(', ')}`);
  return names;
}

function notes(r: Result): string {
  if (r.error !== undefined) return `ERROR: ${r.error}`;
  const out: string[] = [];
  if (typeof r.bytesPerPeer === 'number') {
    out.push(`${bytes(r.bytesPerPeer)}/peer RSS`);
    if (typeof r.heapBytesPerPeer === 'number') out.push(`heap ${bytes(r.heapBytesPerPeer)}`);
    if (typeof r.reservedBytesPerPeer === 'number') out.push(`reserved ${bytes(r.reservedBytesPerPeer)}`);
  }
  if (typeof r.shareMinPct === 'number') {
    out.push(`share min/max ${(r.shareMinPct as number).toFixed(0)}%/${(r.shareMaxPct as number).toFixed(0)}% of fair`);
    if ((r.starvedSenders as number) > 0) out.push(`${r.starvedSenders} starved`);
  }
  if (r.spreadPct !== null) out.push(`±${(r.spreadPct / 2).toFixed(0)}%`);
  if (typeof r.p99SpreadPct === 'number' && r.msgsPerSec !== null) out.push(`p99 ±${(r.p99SpreadPct / 2).toFixed(0)}%`);
  return out.join(', ');
}

function table(results: readonly Result[]): string {
  const head = ['workload', 'system', 'msgs/s', 'p50 us', 'p99 us', 'p99.9 us', 'notes'];
  const rows: string[][] = [];
  results.forEach((r, i) => {
    if (i > 0 && r.workload !== results[i - 1]!.workload) rows.push(head.map(() => ''));
    rows.push([r.workload, r.system, si(r.msgsPerSec), us(r.p50us), us(r.p99us), us(r.p999us), notes(r)]);
  });
  return textTable(head, rows, new Set([2, 3, 4, 5]));
}

// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      html: { type: 'string' },
      only: { type: 'string' },
      systems: { type: 'string' },
      verbose: { type: 'boolean', short: 'v', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const workloads = (list(values.only, WORKLOADS, 'workload') ?? [...WORKLOADS]) as WorkloadName[];
  const systemNames = list(values.systems, SYSTEMS.map((s) => s.name), 'system');
  const quick = values.quick!;
  const tunables = quick ? QUICK_TUNABLES : FULL_TUNABLES;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const pool = new HostPool();
  const debug = values.verbose ? log : () => {};
  const ctx: BenchContext = { quick, pool, tunables, log, debug };
  const started = performance.now();

  const systems: BenchSystem[] = [];
  const loadErrors: { system: string; error: string }[] = [];
  for (const entry of SYSTEMS) {
    if (systemNames && !systemNames.includes(entry.name)) continue;
    try {
      systems.push(await entry.load());
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      loadErrors.push({ system: entry.name, error });
      log(`! ${entry.name}: failed to load: ${error}`);
    }
  }

  const m = machine();
  log(`threadbus bench: node ${m.node}, ${m.cpus} cpus (${m.cpuModel}), ${quick ? 'quick' : 'full'} mode`);
  const results: Result[] = [];
  const onSignal = () => {
    void pool.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const report = (r: Result) => {
      results.push(r);
      const head = r.msgsPerSec !== null ? `${si(r.msgsPerSec)} msg/s` : typeof r.bytesPerPeer === 'number' ? bytes(r.bytesPerPeer) + '/peer' : '';
      const lat = r.p50us !== null ? ` p50 ${us(r.p50us)} us p99 ${us(r.p99us)} us` : '';
      log(`  ${r.workload.padEnd(16)} ${r.system.padEnd(20)} ${r.error ? `ERROR ${r.error}` : head + lat}  (${(r.wallMs / 1000).toFixed(1)} s)`);
    };
    for (const w of workloads) {
      const these = systems.filter((s) => s.workloads[w]);
      if (sideBySide(w)) for (const r of await measureSide(these, w, ctx)) report(r);
      else for (const s of these) report(await measure(s, w, ctx));
    }
  } finally {
    await pool.close();
  }
  const totalS = (performance.now() - started) / 1000;

  console.log(table(results));
  console.log(`\n${results.length} results in ${totalS.toFixed(1)} s (${quick ? 'quick' : 'full'}: ${tunables.runs} runs of ${tunables.windowMs} ms after warm-up runs until ${tunables.warmupSettleRuns} in a row agree within ${tunables.warmupSettlePct} %; medians)`);

  if (values.json) {
    const { node, cpus, date, platform, cpuModel } = m;
    const doc = { node, cpus, quick, date, platform, cpuModel, tunables, totalSeconds: totalS, results, ...(loadErrors.length ? { loadErrors } : {}) };
    writeFileSync(values.json, JSON.stringify(doc, null, 2) + '\n');
    log(`wrote ${values.json}`);
  }
  if (values.html) {
    writeFileSync(values.html, resultsPage(results, { quick, tunables, totalSeconds: totalS }));
    log(`wrote ${values.html}`);
  }
  return results.some((r) => r.error !== undefined) || loadErrors.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    console.error(USAGE);
    process.exit(2);
  },
);
