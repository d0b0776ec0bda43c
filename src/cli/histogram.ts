/*
 * Latency histograms (hdr-histogram-js, 3 significant digits, nanoseconds from 1 ns to
 * 60 s) and the percentiles every report prints. Workers record into their own histogram
 * and ship it as hdr's compressed base64 encoding; the main thread merges. Recording
 * allocates nothing; values past the range are clamped, not lost.
 */

import { createRequire } from 'node:module';
import type * as Hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';

const HIGHEST_NS = 60e9;

// Loaded on first use: importing it takes ~100 ms, which processes that never record a
// latency (the bench's idle-memory children) should not pay.
let hdr: typeof Hdr | undefined;
const lib = (): typeof Hdr => (hdr ??= createRequire(import.meta.url)('hdr-histogram-js') as typeof Hdr);

export function newHistogram(): Histogram {
  return lib().build({ lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_NS, numberOfSignificantValueDigits: 3 });
}

export function recordNs(h: Histogram, ns: number): void {
  h.recordValue(ns < 1 ? 1 : ns > HIGHEST_NS ? HIGHEST_NS : Math.round(ns));
}

export function encodeHistogram(h: Histogram): string {
  return lib().encodeIntoCompressedBase64(h);
}

/** Adds an encoded histogram into `into`. */
export function addEncoded(into: Histogram, encoded: string): void {
  const h = lib().decodeFromCompressedBase64(encoded);
  into.add(h);
  h.destroy();
}

export interface Percentiles {
  p50us: number;
  p90us: number;
  p99us: number;
  p999us: number;
  maxus: number;
}

/** The report's percentiles, in microseconds; null when nothing was recorded. */
export function percentiles(h: Histogram): Percentiles | null {
  if (h.totalCount === 0) return null;
  const at = (p: number) => h.getValueAtPercentile(p) / 1000;
  return { p50us: at(50), p90us: at(90), p99us: at(99), p999us: at(99.9), maxus: h.maxValue / 1000 };
}

/** Points of the percentile plot: x = 1 / (1 - p) (log axis), y = latency in us. */
export function percentileCurve(h: Histogram): Array<{ p: number; us: number }> {
  if (h.totalCount === 0) return [];
  const out: Array<{ p: number; us: number }> = [];
  for (const p of [0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999]) {
    out.push({ p, us: h.getValueAtPercentile(p) / 1000 });
  }
  out.push({ p: 100, us: h.maxValue / 1000 });
  return out;
}
