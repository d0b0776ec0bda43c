/*
 * Reading V8 .cpuprofile files: the thread a file belongs to (from its default name,
 * CPU.<date>.<time>.<pid>.<threadId>.<seq>.cpuprofile) and its busiest functions by
 * self time, idle excluded.
 */

import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

export interface Hot {
  name: string;
  selfMs: number;
  pct: number;
}

export interface ProfileSummary {
  /** Sampled time in ms, idle excluded. */
  busyMs: number;
  top: Hot[];
}

/** pid and threadId from a default --cpu-prof file name, or null. */
export function threadOf(file: string): { pid: number; threadId: number } | null {
  const m = /^CPU\.\d+\.\d+\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(file);
  return m ? { pid: Number(m[1]), threadId: Number(m[2]) } : null;
}

function frameName(f: CallFrame): string {
  const fn = f.functionName || '(anonymous)';
  if (!f.url) return fn;
  const file = f.url.replace(/^file:\/\//, '').split('/').slice(-2).join('/');
  return `${fn} ${file}:${f.lineNumber + 1}`;
}

export function summarize(path: string, n = 5): ProfileSummary {
  const p = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const hits = p.nodes.reduce((a, x) => a + (x.hitCount ?? 0), 0);
  const msPerHit = hits > 0 ? (p.endTime - p.startTime) / 1000 / hits : 0;
  const self = new Map<string, number>();
  let busy = 0;
  for (const node of p.nodes) {
    const h = node.hitCount ?? 0;
    if (h === 0 || node.callFrame.functionName === '(idle)') continue;
    const name = frameName(node.callFrame);
    self.set(name, (self.get(name) ?? 0) + h);
    busy += h;
  }
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([name, h]) => ({ name, selfMs: h * msPerHit, pct: busy > 0 ? (100 * h) / busy : 0 }));
  return { busyMs: busy * msPerHit, top };
}
