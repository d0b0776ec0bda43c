import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cli, scratch } from './fixtures/cli-run.js';

const CHROMIUM = '/usr/bin/chromium';
const BROWSER_TIMEOUT_MS = 90_000;

/** The DOM of a page after its scripts ran, from headless Chromium (Debian's package). */
function dumpDom(file: string, profileDir: string): Promise<string> {
  const flags = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profileDir}`, '--dump-dom', pathToFileURL(file).href,
  ];
  return new Promise((resolve, reject) => {
    execFile(CHROMIUM, flags, { timeout: BROWSER_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 32 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`chromium failed: ${err.message}\n${stderr.slice(-2000)}`));
      else resolve(stdout);
    });
  });
}

interface Json {
  timeline: unknown[];
  compare: { timeline: unknown[] };
}

test('an --html report opened in headless Chromium draws every data point of every plot', async (t) => {
  t.true(existsSync(CHROMIUM), `${CHROMIUM} is needed (Debian package chromium)`);
  const dir = scratch(t);
  const html = join(dir, 'report.html');
  const json = join(dir, 'report.json');
  const r = await cli([
    'bench', '--pattern', 'fanin', '--peers', '4', '--uids', '2', '--greedy', '1', '--duration', '1.5',
    '--compare', 'messageport', '--html', html, '--json', json,
  ]);
  t.is(r.code, 0, r.stderr);
  const dom = await dumpDom(html, join(dir, 'chromium'));
  const plots = [...dom.matchAll(/<svg class="plot" id="(\w+)"[^>]*?data-expected="(\d+)" data-drawn="(\d+)"/g)]
    .map((m) => ({ id: m[1]!, expected: Number(m[2]), drawn: Number(m[3]) }));
  t.deepEqual(plots.map((p) => p.id), ['throughput', 'latency', 'shares'], 'every plot was checked in the browser');
  for (const p of plots) {
    t.true(p.expected > 0, `${p.id} has data points`);
    t.is(p.drawn, p.expected, `${p.id}: the browser laid out every point`);
  }
  // The throughput plot holds every timeline sample of both transports.
  const j = JSON.parse(readFileSync(json, 'utf8')) as Json;
  t.is(plots[0]!.expected, j.timeline.length + j.compare.timeline.length);
  t.regex(dom, /3 of 3 plots drew all their points/);
});
