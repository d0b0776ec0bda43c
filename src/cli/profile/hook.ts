/*
 * Loaded with --import into every thread of a program run by `threadbus profile` (the
 * flag is inherited by workers with the rest of execArgv). It records, for the profiler,
 * who each thread is: the parent writes down the name it gave a worker, and each worker
 * writes down the threadbus role it can see in its workerData (a peer ticket's uid). It
 * also keeps profiling on for workers started with an explicit execArgv, which would
 * otherwise drop --cpu-prof. The program itself is not changed otherwise.
 */

import wt from 'node:worker_threads';
import { syncBuiltinESMExports } from 'node:module';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIR_ENV, FLAGS_ENV, type ThreadRecord } from './records.js';

/** A threadbus peer ticket anywhere in the first two levels of workerData. */
function ticketUid(data: unknown, depth = 0): number | null {
  if (typeof data !== 'object' || data === null || depth > 2) return null;
  const d = data as { kind?: unknown; uid?: unknown };
  if (d.kind === 'threadbus.ticket' && typeof d.uid === 'number') return d.uid;
  for (const v of Object.values(data)) {
    const uid = ticketUid(v, depth + 1);
    if (uid !== null) return uid;
  }
  return null;
}

function write(dir: string, rec: ThreadRecord, tag: string): void {
  try {
    writeFileSync(join(dir, `thread-${rec.pid}-${rec.threadId}-${tag}.json`), JSON.stringify(rec));
  } catch {
    // The profiler falls back to thread ids; a missing record must not break the program.
  }
}

const dir = process.env[DIR_ENV];
if (dir !== undefined) {
  const flags = JSON.parse(process.env[FLAGS_ENV] ?? '[]') as string[];
  const uid = wt.isMainThread ? null : ticketUid(wt.workerData);
  if (uid !== null) write(dir, { pid: process.pid, threadId: wt.threadId, role: `peer uid ${uid}` }, 'self');
  const Original = wt.Worker;
  class ProfiledWorker extends Original {
    constructor(filename: string | URL, options?: wt.WorkerOptions) {
      const execArgv = options?.execArgv;
      const opts = execArgv && !execArgv.some((a) => a.startsWith('--cpu-prof'))
        ? { ...options, execArgv: [...execArgv, ...flags] }
        : options;
      super(filename, opts);
      if (options?.name) write(dir!, { pid: process.pid, threadId: this.threadId, name: options.name }, 'name');
    }
  }
  (wt as { Worker: typeof wt.Worker }).Worker = ProfiledWorker;
  syncBuiltinESMExports();
}
