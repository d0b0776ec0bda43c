// System "piscina": a piscina task round trip from the main thread, the usual
// Node answer for request/reply to a worker. One worker, one task in flight,
// so each round trip is pure latency (piscina's default Atomics-based wakeup).

import { Piscina } from 'piscina';
import { REQREP_PAYLOAD_BYTES, reqrepSample } from '../drivers.js';
import { withTimeout, type BenchContext, type BenchSystem, type RunParams, type Sample, type Session } from '../harness.js';
import { LatencyRecorder, REQREP_LATENCY_CAPACITY, Receipt, makeTemplate, stamp } from '../protocol.js';

const TASK = new URL('../workers/piscina-task.js', import.meta.url);
/** Keep the one worker alive across runs. */
const IDLE_TIMEOUT_MS = 10 * 60_000;

async function reqrep(ctx: BenchContext): Promise<Session> {
  const pool = new Piscina({ filename: TASK.href, minThreads: 1, maxThreads: 1, idleTimeout: IDLE_TIMEOUT_MS });
  const len = REQREP_PAYLOAD_BYTES;
  const tpl = makeTemplate(len);
  const rc = new Receipt(1, len, null, 0, false, null);
  const rec = new LatencyRecorder(REQREP_LATENCY_CAPACITY);
  let seq = 0;
  let closed = false;
  const call = async (): Promise<void> => {
    stamp(tpl, 0, len, seq++ >>> 0, 0, NaN);
    const reply = (await pool.run(tpl)) as Uint8Array;
    rc.check(reply, 0, reply.length);
  };
  try {
    await withTimeout(call(), ctx.tunables.setupTimeoutMs, 'piscina start');
  } catch (e) {
    await pool.destroy();
    throw e;
  }
  return {
    async run(p: RunParams): Promise<Sample> {
      rec.take();
      let tPrev = performance.now();
      const measureFrom = tPrev + p.rampMs;
      const end = measureFrom + p.windowMs;
      let trips = 0;
      let firstT0 = 0;
      for (;;) {
        if (closed) throw new Error('closed');
        await call();
        const t = performance.now();
        if (tPrev >= measureFrom) {
          if (trips === 0) firstT0 = tPrev;
          rec.record((t - tPrev) * 1e6);
          trips++;
          if (t >= end) {
            const s = rec.take();
            return reqrepSample({ trips, elapsedMs: t - firstT0, errors: rc.errors, samplesNs: s.samples, dropped: s.dropped });
          }
        }
        tPrev = t;
      }
    },
    async close() {
      closed = true;
      await pool.destroy();
    },
  };
}

export const system: BenchSystem = {
  name: 'piscina',
  description: 'piscina.run() round trip from the main thread, 1 worker, 1 task in flight',
  workloads: { reqrep },
};
