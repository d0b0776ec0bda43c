// The bench engine's Phase (src/cli/bench/engine.ts) as the project's benchmark drives it:
// a caller that awaits `started` before cutting windows must learn of a phase that failed
// before its threads started, not wait forever.

import test from 'ava';
import { Phase } from '../src/cli/bench/engine.js';
import type { BenchConfig } from '../src/cli/bench/options.js';

const config = (peers: number): BenchConfig => ({
  pattern: 'fanin', peers, size: 64, durationS: 1, messages: null, rate: 1000, uids: 1, greedy: 0,
  limits: {}, json: null, html: null, compare: null,
});

/** `p`'s outcome, or 'pending' if it has not settled after `ms` (a hang guard, not a timing check). */
async function outcome(p: Promise<unknown>, ms: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<string>((resolve) => { timer = setTimeout(() => resolve('pending'), ms); });
  try {
    return await Promise.race([p.then(() => 'resolved', (e: unknown) => `rejected: ${(e as Error).message}`), guard]);
  } finally {
    clearTimeout(timer);
  }
}

test('a phase that fails before its threads start rejects started with the same error', async (t) => {
  // A pattern the plan does not know makes planPeers() throw, before any wiring or thread.
  const phase = new Phase({ ...config(3), pattern: 'no-such-pattern' as BenchConfig['pattern'] }, 'messageport', () => {});
  const run = await outcome(phase.run(), 5000);
  t.regex(run, /^rejected: /);
  t.is(await outcome(phase.started, 5000), run);
});
