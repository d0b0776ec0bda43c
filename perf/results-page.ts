// The project's benchmark results page (`npm run bench -- --html FILE`), built from
// the threadbus command's report code (src/cli/report): the same page shell, tables
// and SVG plots. One plot per workload shows every measured run of every system, so
// the run-to-run spread is visible next to the medians.

import { htmlPage, htmlTable, machine, machineRows } from '../src/cli/report/page.js';
import { PALETTE, linePlot } from '../src/cli/report/svg.js';
import { bytes, si, us } from '../src/cli/format.js';
import type { Result, Tunables } from './harness.js';

export function resultsPage(results: readonly Result[], run: { quick: boolean; tunables: Tunables; totalSeconds: number }): string {
  const systems = [...new Set(results.map((r) => r.system))];
  const color = (s: string) => PALETTE[systems.indexOf(s) % PALETTE.length]!;
  const rows = results.map((r) => [
    r.workload, r.system, r.error !== undefined ? `error: ${r.error}` : si(r.msgsPerSec),
    us(r.p50us), us(r.p99us), us(r.p999us),
    typeof r.bytesPerPeer === 'number' ? bytes(r.bytesPerPeer) : '-',
    r.spreadPct !== null ? `${r.spreadPct.toFixed(0)}%` : '-',
  ]);
  const plots: string[] = [];
  for (const w of [...new Set(results.map((r) => r.workload))]) {
    const series = results
      .filter((r) => r.workload === w && Array.isArray(r.msgsPerSecRuns))
      .map((r) => ({
        name: r.system, color: color(r.system),
        points: (r.msgsPerSecRuns as number[]).map((v, i) => [i + 1, v] as const),
      }));
    if (series.length === 0) continue;
    plots.push(linePlot({ id: `runs-${w}`, title: `${w}: every measured run`, xLabel: 'run', yLabel: 'messages/s', series }));
  }
  const t = run.tunables;
  return htmlPage('threadbus vs. the alternatives', [
    `<p>${run.quick ? 'Quick' : 'Full'} run: ${t.runs} runs of ${t.windowMs} ms after warm-up runs until ${t.warmupSettleRuns} in a row agree within ${t.warmupSettlePct} % (at most ${t.warmupMaxMs} ms, ${t.manyWorkersWarmupMaxMs} ms for many threads; each row's <code>warmupRuns</code> says how many), medians; ${run.totalSeconds.toFixed(0)} s in all. Spread = (max - min) / median of the runs.</p>`,
    '<h2>Machine</h2>', htmlTable(['machine', ''], machineRows(machine())),
    '<h2>Results</h2>', htmlTable(['workload', 'system', 'msgs/s', 'p50 us', 'p99 us', 'p99.9 us', 'bytes/peer', 'spread'], rows),
    '<h2>Runs</h2>', '<div class="plots">', ...plots, '</div>',
  ]);
}
