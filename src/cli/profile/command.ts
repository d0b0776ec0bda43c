/*
 * `threadbus profile [--out DIR] -- node app.js [args]`: runs any Node program with every
 * thread profiled, then writes one 0x flame graph per thread, named after the thread, and
 * prints (and writes to index.txt) what it wrote with each thread's busiest functions.
 *
 * How every thread gets profiled on Node 20: --cpu-prof is refused in NODE_OPTIONS, so
 * the profiler puts it on the child's command line; workers inherit the parent's
 * execArgv, so they are profiled too, and hook.ts (loaded with --import, also inherited)
 * adds the flags to workers started with an explicit execArgv and records thread names.
 * Each thread writes its profile when it exits; the program must end normally.
 */

import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { DIR_ENV, FLAGS_ENV, type ThreadRecord } from './records.js';
import { summarize, threadOf } from './cpuprofile.js';
import { UsageError, parse } from '../usage-error.js';

export const PROFILE_HELP = `usage: threadbus profile [--out DIR] -- node [node-options] app.js [args]

Runs the program with every thread profiled (node --cpu-prof; workers inherit it), then
renders one 0x flame graph per thread into DIR, named after the thread: the name given to
new Worker(..., { name }), else its threadbus role (coordinator, peer uid N), else its
thread id; the main thread is 'main'. Prints an index with each thread's busiest
functions (also written to DIR/index.txt). Threads must exit normally to write a profile.

  --out DIR     where to write (default: profiles/<app>-<timestamp>)
  -h, --help    this text`;

const RENDER_TIMEOUT_MS = 120_000;
/** Flame graphs rendered at once. */
const RENDER_PARALLEL = 2;
const COORDINATOR_NAME = 'threadbus-coordinator';

function zeroXCommand(): string {
  try {
    const req = createRequire(import.meta.url);
    return join(dirname(req.resolve('0x/package.json')), 'cmd.js');
  } catch {
    throw new Error("threadbus profile renders flame graphs with 0x, which is not installed: run 'npm install 0x'");
  }
}

function runChild(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { stdio: 'inherit', env });
    // Ctrl-C reaches the program from the terminal (same process group), and the program
    // decides what it means; the profiler outlives it to render what it wrote.
    const ignore = () => {};
    process.on('SIGINT', ignore);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      resolvePromise(code ?? (signal ? 128 : 1));
    });
  });
}

function render(zeroX: string, profile: string, html: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    execFile(process.execPath, [zeroX, '--visualize-cpu-profile', profile, `--output-html=${html}`],
      { timeout: RENDER_TIMEOUT_MS }, (err, _out, stderr) => {
        if (err) reject(new Error(`0x failed on ${basename(profile)}: ${stderr.trim().split('\n').pop() ?? err.message}`));
        else resolvePromise();
      });
  });
}

/** Thread names: creator's name, else threadbus role, else thread id; unique within the run. */
function threadNames(raw: string, files: string[]): Map<string, string> {
  const recs = new Map<string, ThreadRecord>();
  for (const f of readdirSync(raw).filter((x) => x.startsWith('thread-') && x.endsWith('.json'))) {
    const r = JSON.parse(readFileSync(join(raw, f), 'utf8')) as ThreadRecord;
    const key = `${r.pid}.${r.threadId}`;
    recs.set(key, { ...recs.get(key), ...r });
  }
  const used = new Map<string, number>();
  const out = new Map<string, string>();
  for (const f of files) {
    const t = threadOf(f);
    const rec = t ? recs.get(`${t.pid}.${t.threadId}`) : undefined;
    let name = t?.threadId === 0 ? 'main'
      : rec?.name === COORDINATOR_NAME ? 'coordinator'
      : rec?.name ?? rec?.role ?? (t ? `thread-${t.threadId}` : basename(f, '.cpuprofile'));
    name = name.replace(/[^A-Za-z0-9._-]+/g, '-');
    const n = (used.get(name) ?? 0) + 1;
    used.set(name, n);
    out.set(f, n > 1 ? `${name}-${n}` : name);
  }
  return out;
}

export async function runProfile(out: string, nodeArgs: string[]): Promise<number> {
  const zeroX = zeroXCommand();
  const raw = join(out, 'cpuprofiles');
  mkdirSync(raw, { recursive: true });
  const flags = ['--cpu-prof', `--cpu-prof-dir=${raw}`, `--import=${new URL('./hook.js', import.meta.url).href}`];
  const env = { ...process.env, [DIR_ENV]: raw, [FLAGS_ENV]: JSON.stringify(flags) };
  const code = await runChild([...flags, ...nodeArgs], env);
  const files = readdirSync(raw).filter((f) => f.endsWith('.cpuprofile')).sort();
  if (files.length === 0) {
    console.error(`threadbus profile: the program (exit code ${code}) wrote no profile; did its threads exit normally?`);
    return code || 1;
  }
  const names = threadNames(raw, files);
  const queue = [...files];
  const failures: string[] = [];
  const worker = async () => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      await render(zeroX, join(raw, f), join(out, `${names.get(f)}.html`)).catch((e: Error) => failures.push(e.message));
    }
  };
  await Promise.all(Array.from({ length: RENDER_PARALLEL }, worker));
  const index: string[] = [`threadbus profile: ${files.length} threads of 'node ${nodeArgs.join(' ')}' (exit code ${code})`, ''];
  for (const f of files) {
    const html = join(out, `${names.get(f)}.html`);
    const s = summarize(join(raw, f));
    index.push(`${existsSync(html) ? html : `(not rendered) ${f}`}  ${s.busyMs.toFixed(0)} ms busy`);
    for (const h of s.top) index.push(`    ${h.pct.toFixed(1).padStart(5)}%  ${h.name}`);
  }
  index.push(...failures.map((m) => `error: ${m}`));
  const text = index.join('\n') + '\n';
  writeFileSync(join(out, 'index.txt'), text);
  process.stdout.write(`\n${text}`);
  return failures.length > 0 ? 1 : code;
}

export async function profileCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('threadbus profile', {
    args,
    allowPositionals: true,
    options: { out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(PROFILE_HELP);
    return 0;
  }
  const [cmd, ...nodeArgs] = positionals;
  if (cmd === undefined || !/^node(\.exe)?$/.test(basename(cmd)) && resolve(cmd) !== process.execPath) {
    throw new UsageError(`profile: expected '-- node app.js [args]' after the options, got '${positionals.join(' ')}'`);
  }
  if (nodeArgs.length === 0) throw new UsageError('profile: no program given after node');
  // profiles/<app>[-<its first argument>]-<time>
  const at = nodeArgs.findIndex((a) => !a.startsWith('-'));
  const words = at < 0 ? ['app'] : [basename(nodeArgs[at]!).replace(/\.[cm]?js$/, ''), ...nodeArgs.slice(at + 1, at + 2)];
  const label = words.filter((w) => /^[\w.-]+$/.test(w)).join('-') || 'app';
  const stampNow = new Date().toISOString().replace(/[:.]/g, '-');
  const out = resolve(values.out ?? join('profiles', `${label}-${stampNow}`));
  return runProfile(out, nodeArgs);
}
