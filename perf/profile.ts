// `npm run profile -- <workload>`: run a threadbus workload with every thread
// profiled (node --cpu-prof), then render one 0x flame graph per thread, named
// after the thread's role (coordinator, sender, receiver, ...), and print where
// they are. 0x alone samples only the main thread, where nothing happens.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WORKLOADS } from './profile/workloads.js';

const workload = process.argv[2];
if (workload === undefined || !(WORKLOADS as readonly string[]).includes(workload)) {
  console.error(`usage: npm run profile -- <workload>\n  workloads: ${WORKLOADS.join(', ')}`);
  process.exit(2);
}
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const dir = resolve('profiles', `${workload}-${stamp}`);
mkdirSync(dir, { recursive: true });

const runner = fileURLToPath(new URL('./profile/run.js', import.meta.url));
execFileSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, runner, workload, dir], { stdio: 'inherit', timeout: 120_000 });

const roles = JSON.parse(readFileSync(join(dir, 'roles.json'), 'utf8')) as Record<string, string>;
const require = createRequire(import.meta.url);
const zeroX = join(dirname(require.resolve('0x/package.json')), 'cmd.js');
const written: string[] = [];
for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort()) {
  // CPU.<date>.<time>.<pid>.<threadId>.<seq>.cpuprofile
  const threadId = file.split('.')[4]!;
  const role = roles[threadId] ?? `thread-${threadId}`;
  const html = join(dir, `${role}.html`);
  execFileSync(process.execPath, [zeroX, '--visualize-cpu-profile', join(dir, file), `--output-html=${html}`], { stdio: 'ignore', timeout: 120_000 });
  written.push(html);
}
console.log(`\nflame graphs (one per thread), open in a browser:`);
for (const f of written) console.log(`  ${f}`);
