/*
 * Inline SVG line plots for the HTML reports: linear or log axes, ticks, a legend, one
 * <polyline class="series"> per series with its point count in data-points (the report's
 * self-check and the browser test compare it with what the browser parsed). No scripts,
 * no external resources: the markup is the picture.
 */

export interface Series {
  name: string;
  color: string;
  points: ReadonlyArray<readonly [number, number]>;
}

export interface PlotSpec {
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  /** Tick labels for a log x axis, when the raw values are not what the reader wants. */
  xTickLabel?: (x: number) => string;
  series: Series[];
}

const W = 720;
const H = 320;
const M = { left: 70, right: 150, top: 36, bottom: 48 };

export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceNumber(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

function linearTicks(lo: number, hi: number, n = 5): number[] {
  const span = hi - lo || 1;
  const step0 = span / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

interface Axis {
  lo: number;
  hi: number;
  log: boolean;
  ticks: number[];
}

function axis(values: number[], log: boolean, zeroBased: boolean): Axis {
  const vs = log ? values.filter((v) => v > 0) : values;
  let lo = vs.length ? Math.min(...vs) : 0;
  let hi = vs.length ? Math.max(...vs) : 1;
  if (log) {
    lo = 10 ** Math.floor(Math.log10(lo || 1));
    hi = 10 ** Math.ceil(Math.log10(hi || 10));
    if (hi <= lo) hi = lo * 10;
    return { lo, hi, log, ticks: logTicks(lo, hi) };
  }
  if (zeroBased) lo = Math.min(0, lo);
  if (hi <= lo) hi = lo + 1;
  const ticks = linearTicks(lo, hi);
  hi = Math.max(hi, ticks[ticks.length - 1]!);
  return { lo, hi, log, ticks };
}

function scale(a: Axis, v: number, from: number, to: number): number {
  const f = a.log ? (Math.log10(v) - Math.log10(a.lo)) / (Math.log10(a.hi) - Math.log10(a.lo)) : (v - a.lo) / (a.hi - a.lo);
  return from + f * (to - from);
}

export function linePlot(spec: PlotSpec): string {
  const xs = spec.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = spec.series.flatMap((s) => s.points.map((p) => p[1]));
  const ax = axis(xs, spec.xLog ?? false, false);
  const ay = axis(ys, spec.yLog ?? false, true);
  const x0 = M.left;
  const x1 = W - M.right;
  const y0 = H - M.bottom;
  const y1 = M.top;
  const px = (v: number) => scale(ax, v, x0, x1).toFixed(1);
  const py = (v: number) => scale(ay, v, y0, y1).toFixed(1);
  const out: string[] = [];
  out.push(`<svg class="plot" id="${spec.id}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(spec.title)}">`);
  out.push(`<text x="${W / 2 - M.right / 2}" y="20" text-anchor="middle" class="title">${escapeHtml(spec.title)}</text>`);
  out.push(`<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" class="frame"/>`);
  for (const t of ax.ticks) {
    if (t < ax.lo || t > ax.hi) continue;
    const x = px(t);
    out.push(`<line x1="${x}" x2="${x}" y1="${y1}" y2="${y0}" class="grid"/><text x="${x}" y="${y0 + 16}" text-anchor="middle">${escapeHtml(spec.xTickLabel ? spec.xTickLabel(t) : niceNumber(t))}</text>`);
  }
  for (const t of ay.ticks) {
    if (t < ay.lo || t > ay.hi) continue;
    const y = py(t);
    out.push(`<line x1="${x0}" x2="${x1}" y1="${y}" y2="${y}" class="grid"/><text x="${x0 - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${niceNumber(t)}</text>`);
  }
  out.push(`<text x="${(x0 + x1) / 2}" y="${H - 8}" text-anchor="middle">${escapeHtml(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(spec.yLabel)}</text>`);
  spec.series.forEach((s, i) => {
    const pts = s.points.filter((p) => (!ax.log || p[0] > 0) && (!ay.log || p[1] > 0));
    const coords = pts.map((p) => `${px(p[0])},${py(p[1])}`).join(' ');
    out.push(`<polyline class="series" data-series="${escapeHtml(s.name)}" data-points="${pts.length}" points="${coords}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    for (const p of pts) out.push(`<circle cx="${px(p[0])}" cy="${py(p[1])}" r="2.5" fill="${s.color}"/>`);
    const ly = y1 + 8 + i * 18;
    out.push(`<line x1="${x1 + 12}" x2="${x1 + 32}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="3"/><text x="${x1 + 38}" y="${ly}" dominant-baseline="middle">${escapeHtml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
