// Reads a bench results JSON and reports threadbus against every alternative:
// per-workload ratios, and the benchmark issue's targets as met/missed lines.
// Copes with threadbus (or any system) being absent or errored: "n/a".
//
//   node dist/perf/compare.js FILE [--markdown] [--strict]
//   --markdown  emit markdown tables (for docs) instead of plain text
//   --strict    exit 1 if a target was missed or could not be evaluated

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { bytes, si, textTable } from '../src/cli/format.js';

const SUBJECT = 'threadbus';

interface Row {
  workload: string;
  system: string;
  msgsPerSec: number | null;
  p50us: number | null;
  p99us?: number | null;
  bytesPerPeer?: number | null;
  reservedBytesPerPeer?: number | null;
  createMs?: number | null;
  error?: string;
}

interface Doc {
  node?: string;
  cpus?: number;
  quick?: boolean;
  date?: string;
  results: Row[];
}

type Metric = 'msgsPerSec' | 'p50us' | 'p99us' | 'bytesPerPeer' | 'reservedBytesPerPeer' | 'createMs';

/** Higher-is-better metrics divide subject by other; lower-is-better the other way round. */
const LOWER_IS_BETTER: Record<Metric, boolean> = {
  msgsPerSec: false, p50us: true, p99us: true, bytesPerPeer: true, reservedBytesPerPeer: true, createMs: true,
};

/** Which metric a workload is compared on. */
function metricsOf(workload: string): Metric[] {
  if (workload === 'reqrep') return ['p50us', 'msgsPerSec'];
  if (workload === 'fanin-64-paced') return ['p50us', 'p99us'];
  if (workload === 'idle-peer-memory') return ['bytesPerPeer', 'createMs'];
  return ['msgsPerSec'];
}

interface Ref {
  readonly workload: string;
  readonly system: string;
}

/**
 * A target: the advantage of `subject` over `baseline` in one run (> 1 = subject
 * better) must be at least `min`; or, without a baseline, the subject's own value must
 * be at most `max` (the one absolute target: reserved address space per peer).
 */
type Target = { readonly label: string; readonly metric: Metric; readonly subject: Ref } & (
  | { readonly baseline: Ref; readonly min: number }
  | { readonly baseline: null; readonly max: number }
);

const tb = (workload: string): Ref => ({ workload, system: SUBJECT });
const mp = (workload: string): Ref => ({ workload, system: 'messageport' });

// The targets of the data-path issue (#9), as data. "<= 0.6x messageport's p50" is an
// advantage of at least 1/0.6.
const TARGETS: readonly Target[] = [
  { label: 'oneway-64B >= 10x messageport msgs/s', metric: 'msgsPerSec', subject: tb('oneway-64B'), baseline: mp('oneway-64B'), min: 10 },
  { label: 'oneway-64B >= 0.5x sab-ring msgs/s', metric: 'msgsPerSec', subject: tb('oneway-64B'), baseline: { workload: 'oneway-64B', system: 'sab-ring' }, min: 0.5 },
  { label: 'oneway-64B-send (await send(), 1024 in flight) >= 5x postMessage msgs/s', metric: 'msgsPerSec', subject: tb('oneway-64B-send'), baseline: mp('oneway-64B'), min: 5 },
  { label: 'oneway-64B-idle1000 >= 80% of oneway-64B', metric: 'msgsPerSec', subject: tb('oneway-64B-idle1000'), baseline: tb('oneway-64B'), min: 0.8 },
  { label: 'oneway-1KiB >= 8x messageport msgs/s', metric: 'msgsPerSec', subject: tb('oneway-1KiB'), baseline: mp('oneway-1KiB'), min: 8 },
  { label: 'oneway-64KiB >= 1.5x messageport msgs/s', metric: 'msgsPerSec', subject: tb('oneway-64KiB'), baseline: mp('oneway-64KiB'), min: 1.5 },
  { label: 'reqrep p50 <= 0.6x messageport', metric: 'p50us', subject: tb('reqrep'), baseline: mp('reqrep'), min: 1 / 0.6 },
  { label: 'multicast-8 >= 5x broadcastchannel deliveries/s', metric: 'msgsPerSec', subject: tb('multicast-8'), baseline: { workload: 'multicast-8', system: 'broadcastchannel' }, min: 5 },
  { label: 'pairs-64 >= 3x messageport msgs/s', metric: 'msgsPerSec', subject: tb('pairs-64'), baseline: mp('pairs-64'), min: 3 },
  { label: 'pairs-64 >= 0.5 of one pair (oneway-64B)', metric: 'msgsPerSec', subject: tb('pairs-64'), baseline: tb('oneway-64B'), min: 0.5 },
  { label: 'fanin-64-paced p99 <= messageport', metric: 'p99us', subject: tb('fanin-64-paced'), baseline: mp('fanin-64-paced'), min: 1 },
  { label: 'fanin-64-paced p50 <= 0.5x messageport', metric: 'p50us', subject: tb('fanin-64-paced'), baseline: mp('fanin-64-paced'), min: 2 },
  { label: 'idle peer RSS <= 2.5x messageport', metric: 'bytesPerPeer', subject: tb('idle-peer-memory'), baseline: mp('idle-peer-memory'), min: 1 / 2.5 },
  { label: 'idle peer reserved address space <= 4 MiB', metric: 'reservedBytesPerPeer', subject: tb('idle-peer-memory'), baseline: null, max: 4 * 1024 * 1024 },
  { label: 'creating the idle peers <= 2x messageport', metric: 'createMs', subject: tb('idle-peer-memory'), baseline: mp('idle-peer-memory'), min: 0.5 },
];

function value(doc: Doc, ref: Ref, metric: Metric): { v: number } | { why: string } {
  const row = doc.results.find((r) => r.workload === ref.workload && r.system === ref.system);
  if (!row) return { why: `${ref.system} ${ref.workload} not in results` };
  if (row.error !== undefined) return { why: `${ref.system} ${ref.workload} failed: ${row.error}` };
  const v = row[metric];
  if (typeof v !== 'number' || !(v > 0)) return { why: `${ref.system} ${ref.workload} has no ${metric}` };
  return { v };
}

function ratio(doc: Doc, subject: Ref, baseline: Ref, metric: Metric): { r: number; s: number; b: number } | { why: string } {
  const s = value(doc, subject, metric);
  if ('why' in s) return s;
  const b = value(doc, baseline, metric);
  if ('why' in b) return b;
  return { r: LOWER_IS_BETTER[metric] ? b.v / s.v : s.v / b.v, s: s.v, b: b.v };
}

// ---------------------------------------------------------------------------
// Formatting

function fmt(metric: Metric, v: number): string {
  if (metric === 'p50us' || metric === 'p99us') return `${v >= 100 ? v.toFixed(0) : v.toPrecision(3)} us`;
  if (metric === 'createMs') return `${v.toFixed(0)} ms`;
  if (metric === 'bytesPerPeer' || metric === 'reservedBytesPerPeer') return bytes(v);
  return `${si(v)}/s`;
}

const METRIC_NAME: Record<Metric, string> = {
  msgsPerSec: 'msgs/s', p50us: 'p50', p99us: 'p99', bytesPerPeer: 'bytes/peer', reservedBytesPerPeer: 'reserved/peer', createMs: 'create time',
};
const x = (r: number) => `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;

/** Rows of the ratio table: workload, metric, subject's value, other system, its value, advantage. */
function ratioRows(doc: Doc): string[][] {
  const rows: string[][] = [];
  for (const w of new Set(doc.results.map((r) => r.workload))) {
    const others = new Set(doc.results.filter((r) => r.workload === w && r.system !== SUBJECT).map((r) => r.system));
    for (const metric of metricsOf(w)) {
      const s = value(doc, tb(w), metric);
      for (const o of others) {
        const b = value(doc, { workload: w, system: o }, metric);
        const r = ratio(doc, tb(w), { workload: w, system: o }, metric);
        const shown = (v: typeof s) => ('v' in v ? fmt(metric, v.v) : 'n/a');
        rows.push([w, METRIC_NAME[metric], shown(s), o, shown(b), 'r' in r ? x(r.r) : 'n/a']);
      }
    }
  }
  return rows;
}

type Verdict = { target: Target; status: 'met' | 'missed' | 'n/a'; detail: string };

function verdicts(doc: Doc): Verdict[] {
  return TARGETS.map((target) => {
    if (target.baseline === null) {
      const v = value(doc, target.subject, target.metric);
      if ('why' in v) return { target, status: 'n/a', detail: v.why };
      const detail = `${fmt(target.metric, v.v)}, need <= ${fmt(target.metric, target.max)}`;
      return { target, status: v.v <= target.max ? 'met' : 'missed', detail };
    }
    const r = ratio(doc, target.subject, target.baseline, target.metric);
    if ('why' in r) return { target, status: 'n/a', detail: r.why };
    const detail = `${x(r.r)} (${fmt(target.metric, r.s)} vs ${fmt(target.metric, r.b)}, need ${x(target.min)})`;
    return { target, status: r.r >= target.min ? 'met' : 'missed', detail };
  });
}

function header(doc: Doc, file: string): string {
  return `${file}: node ${doc.node ?? '?'}, ${doc.cpus ?? '?'} cpus, ${doc.quick ? 'quick' : 'full'} run, ${doc.date ?? '?'}`;
}

function plain(doc: Doc, file: string): string {
  const out = [header(doc, file), ''];
  out.push(textTable(['workload', 'metric', SUBJECT, 'vs', 'their value', 'advantage'], ratioRows(doc), new Set()));
  out.push('', `(advantage > 1 means ${SUBJECT} is better: more msgs/s, lower latency, fewer bytes, less time)`, '', 'targets:');
  for (const v of verdicts(doc)) out.push(`  ${v.status.toUpperCase().padEnd(6)} ${v.target.label}: ${v.detail}`);
  return out.join('\n');
}

function markdown(doc: Doc, file: string): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const out = [`_${esc(header(doc, file))}_`, ''];
  out.push(`| workload | metric | ${SUBJECT} | vs | their value | advantage |`, '|---|---|--:|---|--:|--:|');
  for (const row of ratioRows(doc)) out.push(`| ${row.join(' | ')} |`);
  out.push('', `Advantage > 1 means ${SUBJECT} is better (more msgs/s, lower latency, fewer bytes per peer, less time).`, '');
  out.push('| target | status | measured |', '|---|---|---|');
  const icon = { met: 'met', missed: '**missed**', 'n/a': 'n/a' } as const;
  for (const v of verdicts(doc)) out.push(`| ${esc(v.target.label)} | ${icon[v.status]} | ${esc(v.detail)} |`);
  return out.join('\n');
}

function main(): number {
  const { values, positionals } = parseArgs({
    options: { markdown: { type: 'boolean', default: false }, strict: { type: 'boolean', default: false } },
    allowPositionals: true,
  });
  const file = positionals[0];
  if (!file) {
    console.error('usage: node dist/perf/compare.js FILE [--markdown] [--strict]');
    return 2;
  }
  const doc = JSON.parse(readFileSync(file, 'utf8')) as Doc;
  if (!Array.isArray(doc.results)) throw new Error(`${file} has no results array`);
  console.log(values.markdown ? markdown(doc, file) : plain(doc, file));
  return values.strict && verdicts(doc).some((v) => v.status !== 'met') ? 1 : 0;
}

process.exitCode = main();
