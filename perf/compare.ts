// Reads a bench results JSON and reports threadbus against every alternative:
// per-workload ratios, and the benchmark issue's targets as met/missed lines.
// Copes with threadbus (or any system) being absent or errored: "n/a".
//
//   node dist/perf/compare.js FILE [--markdown] [--strict]
//   --markdown  emit markdown tables (for docs) instead of plain text
//   --strict    exit 1 if a target was missed or could not be evaluated

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const SUBJECT = 'threadbus';

interface Row {
  workload: string;
  system: string;
  msgsPerSec: number | null;
  p50us: number | null;
  p99us?: number | null;
  bytesPerPeer?: number | null;
  error?: string;
}

interface Doc {
  node?: string;
  cpus?: number;
  quick?: boolean;
  date?: string;
  results: Row[];
}

type Metric = 'msgsPerSec' | 'p50us' | 'bytesPerPeer';

/** Higher-is-better metrics divide subject by other; lower-is-better the other way round. */
const LOWER_IS_BETTER: Record<Metric, boolean> = { msgsPerSec: false, p50us: true, bytesPerPeer: true };

/** Which metric a workload is compared on. */
function metricsOf(workload: string): Metric[] {
  if (workload === 'reqrep') return ['p50us', 'msgsPerSec'];
  if (workload === 'idle-peer-memory') return ['bytesPerPeer'];
  return ['msgsPerSec'];
}

interface Ref {
  readonly workload: string;
  readonly system: string;
}

interface Target {
  readonly label: string;
  readonly metric: Metric;
  /** Ratio = advantage of `subject` over `baseline` (>1 = subject better). */
  readonly subject: Ref;
  readonly baseline: Ref;
  readonly min: number;
}

const tb = (workload: string): Ref => ({ workload, system: SUBJECT });

// The targets, as data.
const TARGETS: readonly Target[] = [
  { label: 'oneway-64B >= 10x messageport msgs/s', metric: 'msgsPerSec', subject: tb('oneway-64B'), baseline: { workload: 'oneway-64B', system: 'messageport' }, min: 10 },
  { label: 'oneway-64B >= 0.5x sab-ring msgs/s', metric: 'msgsPerSec', subject: tb('oneway-64B'), baseline: { workload: 'oneway-64B', system: 'sab-ring' }, min: 0.5 },
  { label: 'oneway-1KiB >= 8x messageport msgs/s', metric: 'msgsPerSec', subject: tb('oneway-1KiB'), baseline: { workload: 'oneway-1KiB', system: 'messageport' }, min: 8 },
  { label: 'reqrep p50 >= 10x lower than messageport', metric: 'p50us', subject: tb('reqrep'), baseline: { workload: 'reqrep', system: 'messageport' }, min: 10 },
  { label: 'multicast-8 >= 5x broadcastchannel deliveries/s', metric: 'msgsPerSec', subject: tb('multicast-8'), baseline: { workload: 'multicast-8', system: 'broadcastchannel' }, min: 5 },
  { label: 'fanin-64 aggregate >= 70% of threadbus oneway-64B', metric: 'msgsPerSec', subject: tb('fanin-64'), baseline: tb('oneway-64B'), min: 0.7 },
  { label: 'pairs-64 aggregate >= 70% of threadbus oneway-64B', metric: 'msgsPerSec', subject: tb('pairs-64'), baseline: tb('oneway-64B'), min: 0.7 },
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
  if (metric === 'p50us') return `${v >= 100 ? v.toFixed(0) : v.toPrecision(3)} us`;
  if (metric === 'bytesPerPeer') return v >= 1024 ? `${(v / 1024).toFixed(1)} KiB` : `${v.toFixed(0)} B`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M/s`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)} k/s`;
  return `${v.toFixed(0)}/s`;
}

const METRIC_NAME: Record<Metric, string> = { msgsPerSec: 'msgs/s', p50us: 'p50', bytesPerPeer: 'bytes/peer' };
const x = (r: number) => `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;

interface Line {
  workload: string;
  metric: Metric;
  subject: string;
  other: string;
  otherValue: string;
  ratio: string;
}

function ratioLines(doc: Doc): Line[] {
  const workloads = [...new Set(doc.results.map((r) => r.workload))];
  const lines: Line[] = [];
  for (const w of workloads) {
    const others = [...new Set(doc.results.filter((r) => r.workload === w && r.system !== SUBJECT).map((r) => r.system))];
    for (const metric of metricsOf(w)) {
      const s = value(doc, tb(w), metric);
      for (const o of others) {
        const b = value(doc, { workload: w, system: o }, metric);
        const r = ratio(doc, tb(w), { workload: w, system: o }, metric);
        lines.push({
          workload: w,
          metric,
          subject: 'v' in s ? fmt(metric, s.v) : 'n/a',
          other: o,
          otherValue: 'v' in b ? fmt(metric, b.v) : 'n/a',
          ratio: 'r' in r ? x(r.r) : 'n/a',
        });
      }
    }
  }
  return lines;
}

type Verdict = { target: Target; status: 'met' | 'missed' | 'n/a'; detail: string };

function verdicts(doc: Doc): Verdict[] {
  return TARGETS.map((target) => {
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
  const lines = ratioLines(doc);
  const head = ['workload', 'metric', SUBJECT, 'vs', 'their value', 'advantage'];
  const rows = lines.map((l) => [l.workload, METRIC_NAME[l.metric], l.subject, l.other, l.otherValue, l.ratio]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const f = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  out.push(f(head), f(widths.map((w) => '-'.repeat(w))), ...rows.map(f));
  out.push('', `(advantage > 1 means ${SUBJECT} is better: more msgs/s, lower p50, fewer bytes)`, '', 'targets:');
  for (const v of verdicts(doc)) out.push(`  ${v.status.toUpperCase().padEnd(6)} ${v.target.label}: ${v.detail}`);
  return out.join('\n');
}

function markdown(doc: Doc, file: string): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const out = [`_${esc(header(doc, file))}_`, ''];
  out.push(`| workload | metric | ${SUBJECT} | vs | their value | advantage |`, '|---|---|--:|---|--:|--:|');
  for (const l of ratioLines(doc)) {
    out.push(`| ${l.workload} | ${METRIC_NAME[l.metric]} | ${l.subject} | ${l.other} | ${l.otherValue} | ${l.ratio} |`);
  }
  out.push('', `Advantage > 1 means ${SUBJECT} is better (more msgs/s, lower p50, fewer bytes per peer).`, '');
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
