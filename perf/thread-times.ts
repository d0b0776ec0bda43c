// What the kernel says about this process's threads (Linux only): the CPU time of each
// (/proc/self/task/<tid>/schedstat, in ns) and its context switches (status). Used by the
// per-thread measurements (perf/send-cpu.ts, perf/pairs-cpu.ts), whose figures stay
// comparable on a loaded machine where wall-clock rates do not.

import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

export interface ThreadTimes {
  cpuNs: number;
  /** Times the thread gave up its core (a sleep: a futex wait, most of them). */
  voluntary: number;
  /** Times it was preempted. */
  involuntary: number;
}

/** This thread's kernel id. */
export function ownTid(): number {
  return Number(readlinkSync('/proc/thread-self').split('/').pop());
}

/** CPU time of thread `tid` (or of the calling thread), in ns. */
export function threadCpuNs(tid: number | 'thread-self'): number {
  const path = tid === 'thread-self' ? '/proc/thread-self/schedstat' : `/proc/self/task/${tid}/schedstat`;
  return Number(readFileSync(path, 'utf8').split(' ')[0]);
}

export function threadTimes(tid: number): ThreadTimes {
  const status = readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  return { cpuNs: threadCpuNs(tid), voluntary: field('voluntary_ctxt_switches'), involuntary: field('nonvoluntary_ctxt_switches') };
}

/** Every thread of the process now, by tid (one that exits while it is read is left out). */
export function allThreadTimes(): Map<number, ThreadTimes> {
  const m = new Map<number, ThreadTimes>();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      m.set(Number(t), threadTimes(Number(t)));
    } catch {
      // the thread exited in between
    }
  }
  return m;
}
