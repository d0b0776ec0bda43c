// fanin-64-paced: 64 sender workers -> 1 receiver at a fixed total offered load,
// run through the threadbus command's load engine (src/cli/bench), so that this
// row and `threadbus bench --pattern fanin --peers 65 --rate 100000` measure the
// same way: every message stamped with its scheduled send time, latency from
// that time (no coordinated omission, as wrk2 measures), hdr percentiles.
// One engine phase runs for the whole session, its 65 peers in threads of the
// pool (perf/lent-thread.ts); each run is a window cut out of it, after a ramp.
// Latency reaches the main thread every TICK_MS, so a window's edges are that coarse.

import { Phase, type ThreadLauncher, type Transport } from '../src/cli/bench/engine.js';
import type { BenchConfig } from '../src/cli/bench/options.js';
import { sleep, type Session, type WorkloadFactory } from './harness.js';
import { LentThread } from './lent-thread.js';

export const PACED_SENDERS = 64;
/** About half of what messageport sustains for fan-in on 2 cores. */
export const PACED_OFFERED_PER_SEC = 100_000;
const TICK_MS = 20;
const MAX_EXTRA_WAIT_MS = 5000;
/** Longer than any session: the session stops the phase itself. */
const SESSION_LIMIT_S = 24 * 3600;

export function pacedFanin(transport: Transport): WorkloadFactory {
  return async (ctx): Promise<Session> => {
    const cfg: BenchConfig = {
      pattern: 'fanin', peers: PACED_SENDERS + 1, size: 64, durationS: SESSION_LIMIT_S, messages: null,
      rate: PACED_OFFERED_PER_SEC, uids: 1, greedy: 0, limits: {}, json: null, html: null, compare: null,
    };
    // The engine's peers run in the pool's hosts, started once for every workload.
    const hosts = await ctx.pool.lease(cfg.peers);
    /** The thread lent to each peer index (that index's host). */
    const lent: Array<LentThread | undefined> = [];
    const launch: ThreadLauncher = (init, transfer, index) => (lent[index] = new LentThread(hosts[index]!, init, transfer, ctx.tunables.setupTimeoutMs));
    /** Hosts whose role ended cleanly go back to the pool (unloaded); the others are terminated. */
    const giveBack = async (): Promise<void> => {
      const ok = await Promise.all(hosts.map(async (h, i) => {
        if (!(lent[i]?.healthy ?? true)) return false;
        return h.unload(ctx.tunables.closeTimeoutMs).then(() => true, () => false);
      }));
      await ctx.pool.release(hosts.filter((_, i) => ok[i]), true);
      await ctx.pool.release(hosts.filter((_, i) => !ok[i]), false);
    };
    const phase = new Phase(cfg, transport, () => {}, { tickMs: TICK_MS, launch });
    const finished = phase.run();
    finished.catch(() => {});
    try {
      await phase.started;
    } catch (e) {
      await finished.catch(() => undefined);
      await giveBack();
      throw e;
    }
    return {
      run: async (p) => {
        await sleep(p.rampMs);
        phase.takeWindow();
        await sleep(p.windowMs);
        if (p.warmup) return { msgsPerSec: null };
        // A loaded machine may hold the receiver's latency back: the window lasts until some arrived.
        for (let waited = 0; phase.windowSamples === 0 && waited < MAX_EXTRA_WAIT_MS; waited += TICK_MS) await sleep(TICK_MS);
        const w = phase.takeWindow();
        if (w.latency === null) throw new Error(`no message arrived in ${(w.seconds * 1000).toFixed(0)} ms`);
        return {
          msgsPerSec: w.delivered / w.seconds,
          p50us: w.latency.p50us,
          p99us: w.latency.p99us,
          p999us: w.latency.p999us,
          extra: { offeredPerSec: PACED_OFFERED_PER_SEC },
        };
      },
      close: async () => {
        phase.stop();
        try {
          const r = await finished;
          if (r.errors.length > 0) throw new Error(r.errors[0]);
        } finally {
          await giveBack();
        }
      },
    };
  };
}
