/*
 * What `threadbus bench` reports, from one place: the JSON document (exactly the fields
 * the command promises, plus `compare` with the same fields when --compare ran), the
 * text summary, and the HTML report with its three plots (throughput over time, latency
 * percentiles on a log axis, each uid's share of the service uid's quota over time).
 */

import type { BenchConfig } from '../bench/options.js';
import type { PhaseResult } from '../bench/engine.js';
import { SERVICE_UID } from '../bench/plan.js';
import { bytes, si, textTable, us } from '../format.js';
import { htmlPage, htmlTable, machineRows, type Machine } from './page.js';
import { PALETTE, linePlot, type Series } from './svg.js';

export interface BenchReport {
  cfg: BenchConfig;
  phases: PhaseResult[];
  machine: Machine;
}

export interface PhaseJson {
  pattern: string;
  peers: number;
  size: number;
  uids: number;
  durationS: number;
  msgsPerSec: number;
  bytesPerSec: number;
  latency: { p50us: number; p90us: number; p99us: number; p999us: number; maxus: number } | null;
  byUid: Array<{ uid: number; sent: number; received: number; refused: number }>;
  timeline: Array<{ t: number; msgsPerSec: number; p99us: number | null }>;
}

const TRANSPORT_COLOR: Record<string, string> = { threadbus: PALETTE[0]!, messageport: PALETTE[1]! };

function phaseJson(cfg: BenchConfig, p: PhaseResult): PhaseJson {
  return {
    pattern: cfg.pattern,
    peers: cfg.peers,
    size: cfg.size,
    uids: cfg.uids,
    durationS: p.durationS,
    msgsPerSec: p.msgsPerSec,
    bytesPerSec: p.bytesPerSec,
    latency: p.latency,
    byUid: p.byUid.map(({ uid, sent, received, refused }) => ({ uid, sent, received, refused })),
    timeline: p.timeline.map(({ t, msgsPerSec, p99us }) => ({ t, msgsPerSec, p99us })),
  };
}

export function toJson(r: BenchReport): PhaseJson & { compare?: PhaseJson } {
  const [main, other] = r.phases;
  const doc: PhaseJson & { compare?: PhaseJson } = phaseJson(r.cfg, main!);
  if (other !== undefined) doc.compare = phaseJson(r.cfg, other);
  return doc;
}

function peakShares(p: PhaseResult): Map<number, number> {
  const peak = new Map<number, number>();
  for (const s of p.shares) for (const [uid, v] of Object.entries(s.byUid)) peak.set(+uid, Math.max(peak.get(+uid) ?? 0, v));
  return peak;
}

function describe(cfg: BenchConfig): string {
  const run = cfg.messages !== null ? `${cfg.messages} messages` : `${cfg.durationS} s`;
  const rate = cfg.rate !== null ? `, ${si(cfg.rate)}msg/s offered` : '';
  const greedy = cfg.greedy > 0 ? `, ${cfg.greedy} greedy` : '';
  return `${cfg.pattern}, ${cfg.peers} peers, ${cfg.size} B, ${cfg.uids} uid${cfg.uids > 1 ? 's' : ''}${greedy}${rate}, ${run}`;
}

function uidRows(cfg: BenchConfig, p: PhaseResult): string[][] {
  const peak = peakShares(p);
  return p.byUid.map((u) => [
    String(u.uid),
    u.uid === SERVICE_UID ? 'service (receives)' : u.uid <= cfg.greedy ? 'greedy sender' : 'sender',
    String(u.sent), String(u.received), String(u.refused),
    u.uid === SERVICE_UID || p.transport !== 'threadbus' ? '-' : `${(peak.get(u.uid) ?? 0).toFixed(1)}%`,
  ]);
}

const UID_HEAD = ['uid', 'role', 'sent', 'received', 'refused (EDQUOT)', `peak share of uid ${SERVICE_UID}'s quota`];

function figures(p: PhaseResult): string[] {
  const l = p.latency;
  return [
    `${si(p.msgsPerSec)}msg/s`, `${bytes(p.bytesPerSec)}/s`, String(p.delivered), `${p.durationS.toFixed(2)} s`,
    us(l?.p50us), us(l?.p90us), us(l?.p99us), us(l?.p999us), us(l?.maxus),
  ];
}

const FIGURE_NAMES = ['throughput', 'bytes', 'messages', 'duration', 'p50 us', 'p90 us', 'p99 us', 'p99.9 us', 'max us'];

export function textSummary(r: BenchReport): string {
  const out: string[] = [`threadbus bench: ${describe(r.cfg)}`];
  const flags = r.phases.flatMap((p) => [
    ...(p.interrupted ? [`${p.transport}: interrupted`] : []),
    ...p.errors.map((e) => `${p.transport}: ERROR ${e}`),
  ]);
  out.push(...flags, '');
  const head = ['', ...r.phases.map((p) => p.transport)];
  const rows = FIGURE_NAMES.map((name, i) => [name, ...r.phases.map((p) => figures(p)[i]!)]);
  if (r.phases.length === 2 && r.phases[1]!.msgsPerSec > 0) {
    head.push(`${r.phases[0]!.transport}/${r.phases[1]!.transport}`);
    const [a, b] = r.phases as [PhaseResult, PhaseResult];
    rows[0]!.push(`${(a.msgsPerSec / b.msgsPerSec).toFixed(2)}x`);
    for (let i = 1; i < rows.length; i++) rows[i]!.push('');
    const ratio = (x?: number, y?: number) => (x && y ? `${(x / y).toFixed(2)}x` : '');
    rows[4]![3] = ratio(a.latency?.p50us, b.latency?.p50us);
    rows[6]![3] = ratio(a.latency?.p99us, b.latency?.p99us);
  }
  out.push(textTable(head, rows, new Set([1, 2, 3])), '');
  for (const p of r.phases) {
    out.push(`per uid (${p.transport}):`, textTable(UID_HEAD, uidRows(r.cfg, p), new Set([0, 2, 3, 4, 5])), '');
  }
  return out.join('\n');
}

export function htmlReport(r: BenchReport): string {
  const cfg = r.cfg;
  const params: string[][] = [
    ['pattern', cfg.pattern], ['peers', String(cfg.peers)], ['size', `${cfg.size} B`],
    ['run', cfg.messages !== null ? `${cfg.messages} messages` : `${cfg.durationS} s`],
    ['rate', cfg.rate !== null ? `${cfg.rate} msg/s` : 'flat out'], ['uids', String(cfg.uids)], ['greedy uids', String(cfg.greedy)],
    ['limits', Object.entries(cfg.limits).map(([k, v]) => `${k}=${v}`).join(', ') || 'defaults'],
  ];
  const throughput: Series[] = r.phases.map((p) => ({
    name: p.transport, color: TRANSPORT_COLOR[p.transport]!, points: p.timeline.map((t) => [t.t, t.msgsPerSec] as const),
  }));
  const latency: Series[] = r.phases.map((p) => ({
    name: p.transport, color: TRANSPORT_COLOR[p.transport]!,
    points: p.curve.map((c) => [1 / (1 - Math.min(c.p, 99.9999) / 100), c.us] as const),
  }));
  const tb = r.phases.find((p) => p.transport === 'threadbus');
  const shareUids = tb ? [...new Set(tb.shares.flatMap((s) => Object.keys(s.byUid).map(Number)))].sort((a, b) => a - b) : [];
  const shares: Series[] = shareUids.map((uid, i) => ({
    name: `uid ${uid}${uid <= cfg.greedy ? ' (greedy)' : ''}`, color: PALETTE[(i + 2) % PALETTE.length]!,
    points: tb!.shares.map((s) => [s.t, s.byUid[uid] ?? 0] as const),
  }));
  const pct = (x: number) => `${+(100 - 100 / x).toPrecision(6)}%`;
  const body = [
    `<p>${r.phases.map((p) => `${p.transport}: <b>${si(p.msgsPerSec)}msg/s</b>, p99 ${us(p.latency?.p99us)} us`).join(' &middot; ')}</p>`,
    '<h2>Parameters</h2>', htmlTable(['parameter', 'value'], params),
    '<h2>Machine</h2>', htmlTable(['machine', ''], machineRows(r.machine)),
    '<h2>Summary</h2>', htmlTable(['', ...r.phases.map((p) => p.transport)], FIGURE_NAMES.map((n, i) => [n, ...r.phases.map((p) => figures(p)[i]!)])),
    ...r.phases.flatMap((p) => [...p.errors.map((e) => `<p><b>error</b> (${p.transport}): ${e}</p>`)]),
    '<div class="plots">',
    linePlot({ id: 'throughput', title: 'Throughput over time', xLabel: 'seconds', yLabel: 'messages/s', series: throughput }),
    linePlot({
      id: 'latency', title: 'Latency by percentile', xLabel: 'percentile', yLabel: 'microseconds', xLog: true, yLog: true,
      xTickLabel: pct, series: latency,
    }),
    linePlot({
      id: 'shares', title: `Share of uid ${SERVICE_UID}'s quota held by each sending uid`, xLabel: 'seconds',
      yLabel: '% of the maximum', series: shares,
    }),
    '</div>',
    ...r.phases.flatMap((p) => [`<h2>Per uid (${p.transport})</h2>`, htmlTable(UID_HEAD, uidRows(cfg, p))]),
  ];
  return htmlPage(`threadbus bench: ${describe(cfg)}`, body);
}
