/*
 * The shell of every HTML report (`threadbus bench --html`, `npm run bench -- --html`):
 * one self-contained page (inline CSS, inline SVG, no network), plain tables, and a tiny
 * self-check that records, on each plot, how many data points the browser actually laid
 * out (data-drawn) against how many the report wrote (data-expected).
 */

import { availableParallelism, cpus, totalmem } from 'node:os';
import { escapeHtml } from './svg.js';

export interface Machine {
  node: string;
  platform: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  date: string;
}

export function machine(): Machine {
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    date: new Date().toISOString(),
  };
}

export function htmlTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const trs = rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${trs}\n</tbody></table>`;
}

const CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:960px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}
svg.plot{display:block;margin:12px 0;font-size:11px}svg .title{font-size:13px;font-weight:600}
svg .frame{fill:none;stroke:#999}svg .grid{stroke:#e5e5e5}
.plots{display:flex;flex-direction:column}#selfcheck{color:#777;font-size:12px}`;

/** Counts, per plot, the points of every series the browser parsed and laid out. */
const SELF_CHECK = `(() => {
  let ok = 0;
  const plots = document.querySelectorAll('svg.plot');
  for (const svg of plots) {
    let drawn = 0, expected = 0;
    for (const pl of svg.querySelectorAll('polyline.series')) {
      const n = Number(pl.dataset.points);
      expected += n;
      const box = pl.getBBox();
      if (pl.points.numberOfItems === n && (n < 2 || box.width > 0 || box.height > 0)) drawn += n;
    }
    svg.dataset.expected = String(expected);
    svg.dataset.drawn = String(drawn);
    if (expected > 0 && drawn === expected) ok++;
  }
  document.getElementById('selfcheck').textContent = ok + ' of ' + plots.length + ' plots drew all their points';
})();`;

export function htmlPage(title: string, body: readonly string[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>${CSS}</style></head>
<body>
<h1>${escapeHtml(title)}</h1>
${body.join('\n')}
<p id="selfcheck"></p>
<script>${SELF_CHECK}</script>
</body></html>
`;
}

export function machineRows(m: Machine): string[][] {
  return [
    ['node', m.node], ['platform', m.platform], ['cpus', `${m.cpus} (${m.cpuModel})`],
    ['memory', `${m.memoryGiB} GiB`], ['date', m.date],
  ];
}
