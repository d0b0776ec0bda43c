/*
 * `threadbus bench`: the front end over the load engine. Live progress on stderr (one
 * rewritten line on a TTY, a plain line per second otherwise), the summary on stdout,
 * --json and --html files. The first Ctrl-C stops the run cleanly (the summary is still
 * printed and written, exit code 130); a second one exits at once.
 */

import { writeFileSync } from 'node:fs';
import { bytes, si, us } from '../format.js';
import { Phase, type PhaseResult, type Progress, type Transport } from './engine.js';
import { parseBench, type BenchConfig } from './options.js';
import { htmlReport, textSummary, toJson, type BenchReport } from '../report/bench-report.js';
import { machine } from '../report/page.js';

export const EXIT_INTERRUPTED = 130;
/** Plain progress lines when stderr is not a terminal: one per this many ms. */
const PLAIN_EVERY_MS = 1000;

function progressLine(p: Progress): string {
  return `${p.transport} ${p.elapsedS.toFixed(1)} s  ${si(p.msgsPerSec)}msg/s  ${bytes(p.bytesPerSec)}/s  p99 ${us(p.p99us)} us  EDQUOT ${p.refused}`;
}

function progressPrinter(): { tick: (p: Progress) => void; end: () => void } {
  const tty = process.stderr.isTTY === true;
  let lastPlain = 0;
  let drawn = false;
  return {
    tick: (p) => {
      if (tty) {
        process.stderr.write(`\r\x1b[K${progressLine(p)}`);
        drawn = true;
      } else if (performance.now() - lastPlain >= PLAIN_EVERY_MS) {
        lastPlain = performance.now();
        process.stderr.write(`${progressLine(p)}\n`);
      }
    },
    end: () => {
      if (drawn) process.stderr.write('\n');
      drawn = false;
    },
  };
}

export async function runBench(cfg: BenchConfig): Promise<number> {
  const transports: Transport[] = cfg.compare ? ['threadbus', cfg.compare] : ['threadbus'];
  const printer = progressPrinter();
  let current: Phase | null = null;
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(EXIT_INTERRUPTED);
    interrupted = true;
    process.stderr.write('\nstopping (Ctrl-C again to quit at once)\n');
    current?.stop();
  };
  process.on('SIGINT', onSigint);
  const phases: PhaseResult[] = [];
  try {
    for (const t of transports) {
      if (interrupted) break;
      current = new Phase(cfg, t, printer.tick);
      phases.push(await current.run());
      printer.end();
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
  const report: BenchReport = { cfg, phases, machine: machine() };
  console.log(textSummary(report));
  if (cfg.json !== null) {
    writeFileSync(cfg.json, JSON.stringify(toJson(report), null, 2) + '\n');
    process.stderr.write(`wrote ${cfg.json}\n`);
  }
  if (cfg.html !== null) {
    writeFileSync(cfg.html, htmlReport(report));
    process.stderr.write(`wrote ${cfg.html}\n`);
  }
  if (interrupted) return EXIT_INTERRUPTED;
  return phases.some((p) => p.errors.length > 0) ? 1 : 0;
}

export async function benchCommand(args: string[]): Promise<number> {
  const cfg = parseBench(args);
  return cfg === null ? 0 : runBench(cfg);
}
