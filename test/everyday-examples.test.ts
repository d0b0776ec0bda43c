/*
 * Every example in examples/ runs to completion (exit code 0, within a bound) and prints
 * what its header promises. Each runs in its own node process, as a user would run it.
 */

import anyTest, { type TestFn } from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const test = anyTest.serial as TestFn;

function run(name: string): Promise<{ code: number | null; out: string; err: string }> {
  const file = fileURLToPath(new URL(`../examples/${name}.js`, import.meta.url));
  return new Promise((resolve) => {
    execFile(process.execPath, [file], { timeout: 60_000 }, (e, out, err) => {
      // On failure `code` is the exit code (a number), or null when killed by the timeout.
      resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, out, err });
    });
  });
}

test('npm run demo: requests are answered, events arrive, every client charge is given back', async (t) => {
  const r = await run('demo');
  t.is(r.code, 0, r.err);
  t.regex(r.out, /\[client uid=1000\] reply: \{"echo":"HELLO","length":5\}/);
  t.regex(r.out, /\[client uid=1001\] reply: \{"echo":"BYE","length":3\}/);
  t.regex(r.out, /\[client uid=1000\] event: uid 1000 asked about "hello"/);
  t.regex(r.out, /uid 1000: sent 4, received \d+; remaining \{"messages":1024,"handles":65536,"bytes":16777216\}/);
  t.regex(r.out, /uid 100: .*remaining \{"messages":1024,"handles":65534,/, 'the service holds just its two nodes');
  t.regex(r.out, /bus closed; every worker has exited/);
});

test('examples/pubsub: the fast subscriber gets every event, the slow one\'s refusals are reported with its uid', async (t) => {
  const r = await run('pubsub');
  t.is(r.code, 0, r.err);
  t.regex(r.out, /\[fast\] got 40 events/);
  t.regex(r.out, /uid 2000 refused it \(EDQUOT, messages\)/);
  const refused = Number(/refused (\d+) of them/.exec(r.out)?.[1]);
  const slowGot = Number(/\[slow\] got (\d+) events/.exec(r.out)?.[1]);
  t.true(refused > 0);
  t.is(refused + slowGot, 40, 'every event the slow one did not get was reported refused');
});

test('examples/waiting: with { wait } the producer is never refused and nothing is lost', async (t) => {
  const r = await run('waiting');
  t.is(r.code, 0, r.err);
  t.regex(r.out, /without wait: EDQUOT from uid 2000/);
  t.regex(r.out, /sent 200 values with \{ wait \}, none refused/);
  t.regex(r.out, /\[consumer\] received all 200 values/);
  const m = /producer sent (\d+), consumer received (\d+)/.exec(r.out);
  t.truthy(m);
  t.is(m![1], m![2]);
});
