// fanin-64-paced: 64 sender workers -> 1 receiver at a fixed total offered load,
// run through the threadbus command's load engine (src/cli/bench), so that this
// row and `threadbus bench --pattern fanin --peers 65 --rate 100000` measure the
// same way: every message stamped with its scheduled send time, latency from
// that time (no coordinated omission, as wrk2 measures), hdr percentiles.
// Each measured run is one engine phase with fresh threads; warm-up runs are
// skipped, since a phase starts its threads afresh anyway.

import { Phase, type Transport } from '../src/cli/bench/engine.js';
import type { BenchConfig } from '../src/cli/bench/options.js';
import type { Session, WorkloadFactory } from './harness.js';

export const PACED_SENDERS = 64;
/** About half of what messageport sustains for fan-in on 2 cores. */
export const PACED_OFFERED_PER_SEC = 100_000;

export function pacedFanin(transport: Transport): WorkloadFactory {
  return async (): Promise<Session> => ({
    run: async (p) => {
      if (p.warmup) return { msgsPerSec: null };
      const cfg: BenchConfig = {
        pattern: 'fanin', peers: PACED_SENDERS + 1, size: 64, durationS: (p.rampMs + p.windowMs) / 1000, messages: null,
        rate: PACED_OFFERED_PER_SEC, uids: 1, greedy: 0, limits: {}, json: null, html: null, compare: null,
      };
      const r = await new Phase(cfg, transport, () => {}).run();
      if (r.errors.length > 0) throw new Error(r.errors[0]);
      if (r.latency === null) throw new Error('no latency sample');
      return {
        msgsPerSec: r.msgsPerSec,
        p50us: r.latency.p50us,
        p99us: r.latency.p99us,
        p999us: r.latency.p999us,
        extra: { offeredPerSec: PACED_OFFERED_PER_SEC, refused: r.byUid.reduce((a, u) => a + u.refused, 0) },
      };
    },
    close: async () => {},
  });
}
