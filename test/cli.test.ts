import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, cli, cliChild, scratch } from './fixtures/cli-run.js';
import { PATTERNS } from '../src/cli/bench/plan.js';
import type { PhaseJson } from '../src/cli/report/bench-report.js';

type Phase = PhaseJson & { compare?: PhaseJson };

const FIELDS = ['pattern', 'peers', 'size', 'uids', 'durationS', 'msgsPerSec', 'bytesPerSec', 'latency', 'byUid', 'timeline'];

function checkPhase(t: import('ava').ExecutionContext, j: PhaseJson, pattern: string, peers: number): void {
  t.is(j.pattern, pattern);
  t.is(j.peers, peers);
  t.is(j.size, 64);
  t.is(j.uids, 1);
  t.true(j.durationS > 0);
  t.true(j.msgsPerSec > 0, 'messages moved');
  t.is(j.bytesPerSec, j.msgsPerSec * 64);
  t.not(j.latency, null);
  const l = j.latency!;
  t.deepEqual(Object.keys(l), ['p50us', 'p90us', 'p99us', 'p999us', 'maxus']);
  t.true(l.p50us > 0 && l.p50us <= l.p90us && l.p90us <= l.p99us && l.p99us <= l.p999us && l.p999us <= l.maxus, JSON.stringify(l));
  t.deepEqual(j.byUid.map((u) => u.uid), [0, 1], 'the service uid and one sending uid');
  for (const u of j.byUid) t.deepEqual(Object.keys(u), ['uid', 'sent', 'received', 'refused']);
  t.true(j.byUid.reduce((a, u) => a + u.sent, 0) > 0);
  t.true(j.byUid.reduce((a, u) => a + u.received, 0) > 0);
  t.true(j.timeline.length >= 2, 'a sample per tick');
  for (const p of j.timeline) t.deepEqual(Object.keys(p), ['t', 'msgsPerSec', 'p99us']);
  t.true(j.timeline.every((p, i) => i === 0 || p.t > j.timeline[i - 1]!.t), 'time moves forward');
  t.true(j.timeline.some((p) => p.msgsPerSec > 0 && p.p99us !== null && p.p99us > 0));
}

for (const pattern of PATTERNS) {
  test.serial(`bench --pattern ${pattern} writes a JSON summary with real values and an HTML report with three plots`, async (t) => {
    const dir = scratch(t);
    const json = join(dir, 'out.json');
    const html = join(dir, 'out.html');
    const peers = pattern === 'pairs' ? 4 : 3;
    const r = await cli(['bench', '--pattern', pattern, '--peers', String(peers), '--duration', '1', '--json', json, '--html', html]);
    t.is(r.code, 0, `${r.stderr}\n${r.stdout}`); // a run's errors are in its summary, on stdout
    t.regex(r.stdout, new RegExp(`threadbus bench: ${pattern}, ${peers} peers`));
    t.regex(r.stdout, /p99\.9 us/);
    const j = JSON.parse(readFileSync(json, 'utf8')) as Phase;
    t.deepEqual(Object.keys(j), FIELDS, 'exactly the documented fields');
    checkPhase(t, j, pattern, peers);
    const page = readFileSync(html, 'utf8');
    t.is(page.match(/<svg class="plot"/g)?.length, 3);
    t.false(/(src|href)="https?:/.test(page), 'needs no network');
    const points = [...page.matchAll(/data-points="(\d+)"/g)].map((m) => Number(m[1]));
    t.true(points.length >= 2 && points.every((n) => n > 0), `every series has points: ${points}`);
  });
}

test.serial('bench --messages N sends exactly N messages and every one arrives', async (t) => {
  const dir = scratch(t);
  const json = join(dir, 'out.json');
  const r = await cli(['bench', '--pattern', 'unicast', '--peers', '4', '--messages', '30000', '--json', json]);
  t.is(r.code, 0, `${r.stderr}\n${r.stdout}`); // a run's errors are in its summary, on stdout
  const j = JSON.parse(readFileSync(json, 'utf8')) as Phase;
  const service = j.byUid.find((u) => u.uid === 0)!;
  const senders = j.byUid.filter((u) => u.uid !== 0);
  t.is(senders.reduce((a, u) => a + u.sent, 0), 30000);
  t.is(service.received, 30000);
});

test.serial('a paced run bounded by --messages, with quota refusals, still delivers exactly N', async (t) => {
  const dir = scratch(t);
  const json = join(dir, 'out.json');
  // A quota of 16 messages makes refusals (and the paced sender's rewinds) certain.
  const r = await cli(['bench', '--pattern', 'pairs', '--peers', '4', '--messages', '6000', '--rate', '6000', '--limits', 'messages=16', '--json', json]);
  t.is(r.code, 0, `${r.stderr}\n${r.stdout}`); // a run's errors are in its summary, on stdout
  const j = JSON.parse(readFileSync(json, 'utf8')) as Phase;
  const [service, senders] = j.byUid as [Phase['byUid'][0], Phase['byUid'][0]];
  t.is(senders.sent, 6000);
  t.is(service.received, 6000);
});

test.serial('bench --compare messageport runs the same pattern over postMessage and reports both', async (t) => {
  const dir = scratch(t);
  const json = join(dir, 'out.json');
  const r = await cli(['bench', '--pattern', 'fanin', '--peers', '3', '--duration', '1', '--compare', 'messageport', '--json', json]);
  t.is(r.code, 0, `${r.stderr}\n${r.stdout}`); // a run's errors are in its summary, on stdout
  t.regex(r.stdout, /threadbus\s+messageport\s+threadbus\/messageport/);
  t.regex(r.stdout, /per uid \(messageport\)/);
  const j = JSON.parse(readFileSync(json, 'utf8')) as Phase;
  t.deepEqual(Object.keys(j), [...FIELDS, 'compare']);
  checkPhase(t, j, 'fanin', 3);
  t.deepEqual(Object.keys(j.compare!), FIELDS);
  checkPhase(t, j.compare!, 'fanin', 3);
});

test.serial('bench --uids 2 --greedy 1: both sending uids are reported and the polite one is not starved', async (t) => {
  const dir = scratch(t);
  const json = join(dir, 'out.json');
  const r = await cli([
    'bench', '--pattern', 'fanin', '--peers', '5', '--uids', '2', '--greedy', '1', '--rate', '2000',
    '--limits', 'messages=256', '--duration', '1', '--json', json,
  ]);
  t.is(r.code, 0, `${r.stderr}\n${r.stdout}`); // a run's errors are in its summary, on stdout
  t.regex(r.stdout, /greedy sender/);
  const j = JSON.parse(readFileSync(json, 'utf8')) as Phase;
  t.deepEqual(j.byUid.map((u) => u.uid), [0, 1, 2]);
  const [service, greedy, polite] = j.byUid as [Phase['byUid'][0], Phase['byUid'][0], Phase['byUid'][0]];
  t.true(greedy.sent > 0);
  t.true(polite.sent > 0, 'the polite uid still got messages through');
  t.is(service.received, greedy.sent + polite.sent, 'everything accepted was received');
});

test('a bad flag exits 2 with a message naming it', async (t) => {
  const r = await cli(['bench', '--no-such-flag']);
  t.is(r.code, 2);
  t.regex(r.stderr, /--no-such-flag/);
  t.is(r.stdout, '');
});

test('bad flag values and unknown commands exit 2 with a clear message', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['bench', '--pattern', 'broadcast'], /--pattern must be one of unicast, reqrep/],
    [['bench', '--peers', '1'], /--peers must be an integer from 2/],
    [['bench', '--pattern', 'pairs', '--peers', '3'], /--pattern pairs needs an even --peers/],
    [['bench', '--size', '8'], /--size must be an integer from 16/],
    [['bench', '--greedy', '2'], /--greedy 2 is more than --uids 1/],
    [['bench', '--limits', 'messages=10,cats=2'], /--limits: expected messages=N/],
    [['bench', '--duration', '1', '--messages', '5'], /not both/],
    [['bench', '--compare', 'piscina'], /--compare supports 'messageport' only/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['profile', '--', 'python', 'app.py'], /expected '-- node app.js/],
    [[], /usage: threadbus <command>/],
  ];
  for (const [args, message] of cases) {
    const r = await cli(args);
    t.is(r.code, 2, args.join(' '));
    t.regex(r.stderr + r.stdout, message, args.join(' '));
  }
});

test('--help works for the command and each subcommand', async (t) => {
  for (const [args, what] of [[['--help'], /commands:/], [['bench', '--help'], /--pattern P/], [['profile', '-h'], /--out DIR/]] as const) {
    const r = await cli([...args]);
    t.is(r.code, 0);
    t.regex(r.stdout, what);
  }
});

test.serial('Ctrl-C stops a bench run cleanly and still prints and writes its summary', async (t) => {
  const dir = scratch(t);
  const json = join(dir, 'out.json');
  const html = join(dir, 'out.html');
  const child = cliChild(t, ['bench', '--duration', '600', '--json', json, '--html', html]);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  const progressed = new Promise<void>((resolve) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d;
      // The first plain progress line: the run is under way.
      if (/msg\/s .* EDQUOT/.test(stderr)) resolve();
    });
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await Promise.race([progressed, exited]);
  child.kill('SIGINT');
  t.is(await exited, 130, stderr);
  t.regex(stdout, /threadbus: interrupted/);
  t.regex(stdout, /throughput/);
  const j = JSON.parse(readFileSync(json, 'utf8')) as Phase;
  t.true(j.msgsPerSec > 0);
  t.true(j.durationS < 600);
  t.regex(readFileSync(html, 'utf8'), /<svg class="plot" id="throughput"/);
});

test.serial('on a terminal the progress line is rewritten in place; in a pipe it is a plain line', async (t) => {
  // util-linux `script` (Debian's essential bsdutils) gives the command a pseudo-terminal.
  const tty = await new Promise<string>((resolve, reject) => {
    execFile('script', ['-qec', `${process.execPath} ${BIN} bench --duration 1.2 >/dev/null`, '/dev/null'],
      { timeout: 60_000, killSignal: 'SIGKILL' }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
  t.regex(tty, /\r\x1b\[Kthreadbus \d+\.\d s .*msg\/s .* EDQUOT \d+\r\x1b\[Kthreadbus/, 'the same line, redrawn');
  const piped = await cli(['bench', '--duration', '1.2']);
  t.is(piped.code, 0);
  t.regex(piped.stderr, /^threadbus \d+\.\d s .*msg\/s .* EDQUOT \d+\n/m);
  t.false(piped.stderr.includes('\x1b['), 'no terminal control codes in a pipe');
});
