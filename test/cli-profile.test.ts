import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli, scratch } from './fixtures/cli-run.js';
import { threadOf } from '../src/cli/profile/cpuprofile.js';

const APP = fileURLToPath(new URL('./fixtures/profile-app.js', import.meta.url));

/** What 0x writes: a page whose script calls visualizer(tree, { visualizeCpuProfile: file }). */
function zeroXPayload(html: string): { root: { name: string; value: number }; profile: string } {
  const start = html.lastIndexOf('visualizer({');
  const optsAt = html.lastIndexOf(', {"kernelTracing"');
  if (start < 0 || optsAt < start) throw new Error('not a 0x flame graph page');
  const tree = JSON.parse(html.slice(start + 'visualizer('.length, optsAt)) as { merged: { name: string; value: number } };
  const opts = JSON.parse(html.slice(optsAt + 2, html.lastIndexOf(')'))) as { visualizeCpuProfile: string };
  return { root: tree.merged, profile: opts.visualizeCpuProfile };
}

test('threadbus profile -- node app.js writes a valid 0x flame graph for each thread, named after it', async (t) => {
  const out = scratch(t);
  const r = await cli(['profile', '--out', out, '--', 'node', APP]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /profile-app: 2000 round trips done/, 'the program ran as usual');
  const pages = readdirSync(out).filter((f) => f.endsWith('.html')).sort();
  // main, the coordinator, the worker its creator named, and the unnamed worker by its threadbus role.
  t.deepEqual(pages, ['coordinator.html', 'main.html', 'peer-uid-2.html', 'pinger.html']);
  const threads = new Set<number>();
  for (const page of pages) {
    const { root, profile } = zeroXPayload(readFileSync(join(out, page), 'utf8'));
    t.is(root.name, '(root)');
    t.true(root.value > 0, `${page} has samples`);
    const thread = threadOf(profile.split('/').pop()!);
    t.not(thread, null, profile);
    threads.add(thread!.threadId);
  }
  t.is(threads.size, 4, 'one page per thread');
  const index = readFileSync(join(out, 'index.txt'), 'utf8');
  for (const page of pages) t.true(index.includes(join(out, page)), `index lists ${page}`);
  t.regex(index, /coordinator\.html\s+\d+ ms busy\n\s+\d+\.\d%\s+\S+/, 'with its busiest functions');
});

test('threadbus profile passes the program\'s exit code through, and says so when no profile was written', async (t) => {
  const out = scratch(t);
  const failing = await cli(['profile', '--out', join(out, 'a'), '--', 'node', '-e', 'process.exitCode = 3']);
  t.is(failing.code, 3);
  t.deepEqual(readdirSync(join(out, 'a')).filter((f) => f.endsWith('.html')), ['main.html']);
  // The program's own --cpu-prof-dir wins over the profiler's: nothing lands where it looks.
  const elsewhere = await cli(['profile', '--out', join(out, 'b'), '--', 'node', `--cpu-prof-dir=${join(out, 'c')}`, '-e', '0']);
  t.is(elsewhere.code, 1);
  t.regex(elsewhere.stderr, /wrote no profile/);
});
