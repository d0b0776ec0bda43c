/*
 * What the profile hook (hook.ts, inside the profiled program) tells the profiler
 * (command.ts): the environment that carries the record directory and the profiling
 * flags, and one small JSON record per fact learned about a thread. Kept apart from the
 * hook so that importing these names runs no hook.
 */

export const DIR_ENV = 'THREADBUS_PROFILE_DIR';
export const FLAGS_ENV = 'THREADBUS_PROFILE_FLAGS';

/** What one record file says about a thread; the profiler merges them. */
export interface ThreadRecord {
  pid: number;
  threadId: number;
  /** The name its creator gave it (new Worker(..., { name })). */
  name?: string;
  /** What threadbus sees in its workerData: 'peer uid N'. */
  role?: string;
}
