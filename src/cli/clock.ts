/*
 * A millisecond clock that every thread of the process shares, for latencies stamped in
 * one thread and read in another. performance.now() has a per-thread origin; offsetting
 * it onto the process-wide uv_hrtime once per thread (best of 16 tries, the narrowest
 * bracket wins) makes stamps comparable, and each read afterwards allocates nothing.
 */

import { hrtime } from 'node:process';

function measureOffsetMs(): number {
  let bestGap = Infinity;
  let offset = 0;
  for (let i = 0; i < 16; i++) {
    const a = performance.now();
    const h = Number(hrtime.bigint()) / 1e6;
    const b = performance.now();
    if (b - a < bestGap) {
      bestGap = b - a;
      offset = h - (a + b) / 2;
    }
  }
  return offset;
}

const OFFSET_MS = measureOffsetMs();

/** Milliseconds on a clock shared by all threads of this process. */
export function nowMs(): number {
  return performance.now() + OFFSET_MS;
}
