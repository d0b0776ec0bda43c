/*
 * `threadbus bench` flags (node:util parseArgs) -> a checked BenchConfig. Every bad
 * value is a UsageError naming the flag, so the command exits 2 with a clear message.
 */

import { availableParallelism } from 'node:os';
import type { Limits } from '../../index.js';
import { UsageError, intFlag, numberFlag, parse } from '../usage-error.js';
import { PATTERNS, PATTERN_HELP, POLITE_RATE, type Pattern } from './plan.js';
import { MIN_PAYLOAD_BYTES } from './peer-thread.js';

export interface BenchConfig {
  readonly pattern: Pattern;
  readonly peers: number;
  readonly size: number;
  /** Run length; null when --messages bounds the run instead. */
  readonly durationS: number | null;
  readonly messages: number | null;
  readonly rate: number | null;
  readonly uids: number;
  readonly greedy: number;
  readonly limits: Partial<Limits>;
  readonly json: string | null;
  readonly html: string | null;
  readonly compare: 'messageport' | null;
}

export const DEFAULT_DURATION_S = 10;
const MAX_PEERS = 1024;

export const BENCH_HELP = `usage: threadbus bench [options]

Load-test a bus of its own: one worker thread per peer, live progress on stderr, a
summary on stdout (throughput, latency percentiles, per-uid table).

  --pattern P        ${PATTERNS.join(' | ')} (default unicast)
${PATTERNS.map((p) => `                       ${p}: ${PATTERN_HELP[p]}`).join('\n')}
  --peers N          peers, one worker thread each (default: availableParallelism() = ${availableParallelism()}; at least 2)
  --size BYTES       payload size (default 64, at least ${MIN_PAYLOAD_BYTES}: seq and send time are stamped in)
  --duration S       run for S seconds (default ${DEFAULT_DURATION_S})
  --messages N       or: send N messages (requests) in all, then stop
  --rate MSG/S       total offered load, paced; latency counts from each message's scheduled time
  --uids N           spread the sending peers over uids 1..N (receivers are uid 0; default 1)
  --greedy K         uids 1..K send as fast as they can, ignoring --rate (the others keep to
                     --rate, ${POLITE_RATE} msg/s when not given)
  --limits L         per-uid maxima, e.g. messages=1024,bytes=1048576[,handles=N]
  --json FILE        write the summary as JSON
  --html FILE        write a self-contained HTML report with plots
  --compare messageport
                     run the same pattern over postMessage afterwards and show both
  -h, --help         this text

Ctrl-C stops the run; the summary is still printed and written (exit code 130).`;

function parseLimits(s: string | undefined): Partial<Limits> {
  if (s === undefined) return {};
  const out: Partial<Limits> = {};
  for (const part of s.split(',')) {
    const [k, v, extra] = part.split('=');
    if (k === undefined || v === undefined || extra !== undefined || !['messages', 'handles', 'bytes'].includes(k.trim())) {
      throw new UsageError(`--limits: expected messages=N,bytes=N,handles=N, got '${part}'`);
    }
    out[k.trim() as keyof Limits] = intFlag(v.trim(), `--limits ${k.trim()}`, 1, 2 ** 31 - 1)!;
  }
  return out;
}

/** Parsed config, or null when --help was asked for (and printed). */
export function parseBench(args: string[]): BenchConfig | null {
  const { values } = parse('threadbus bench', {
    args,
    allowPositionals: false,
    options: {
      pattern: { type: 'string' },
      peers: { type: 'string' },
      size: { type: 'string' },
      duration: { type: 'string' },
      messages: { type: 'string' },
      rate: { type: 'string' },
      uids: { type: 'string' },
      greedy: { type: 'string' },
      limits: { type: 'string' },
      json: { type: 'string' },
      html: { type: 'string' },
      compare: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(BENCH_HELP);
    return null;
  }
  const pattern = (values.pattern ?? 'unicast') as Pattern;
  if (!PATTERNS.includes(pattern)) throw new UsageError(`--pattern must be one of ${PATTERNS.join(', ')}, got '${values.pattern}'`);
  let peers = intFlag(values.peers, '--peers', 2, MAX_PEERS) ?? Math.max(2, availableParallelism());
  if (pattern === 'pairs' && peers % 2 !== 0) {
    if (values.peers !== undefined) throw new UsageError(`--pattern pairs needs an even --peers, got ${peers}`);
    peers--;
  }
  const size = intFlag(values.size, '--size', MIN_PAYLOAD_BYTES, 16 << 20) ?? 64;
  if (values.duration !== undefined && values.messages !== undefined) {
    throw new UsageError('give --duration or --messages, not both');
  }
  const messages = intFlag(values.messages, '--messages', 1, Number.MAX_SAFE_INTEGER) ?? null;
  const durationS = messages !== null ? null : numberFlag(values.duration, '--duration', 0.1, 86_400) ?? DEFAULT_DURATION_S;
  const rate = numberFlag(values.rate, '--rate', 1, 1e9) ?? null;
  const uids = intFlag(values.uids, '--uids', 1, MAX_PEERS) ?? 1;
  const greedy = intFlag(values.greedy, '--greedy', 0, MAX_PEERS) ?? 0;
  if (greedy > uids) throw new UsageError(`--greedy ${greedy} is more than --uids ${uids}`);
  if (values.compare !== undefined && values.compare !== 'messageport') {
    throw new UsageError(`--compare supports 'messageport' only, got '${values.compare}'`);
  }
  return {
    pattern, peers, size, durationS, messages, rate, uids, greedy,
    limits: parseLimits(values.limits),
    json: values.json ?? null,
    html: values.html ?? null,
    compare: values.compare === 'messageport' ? 'messageport' : null,
  };
}
