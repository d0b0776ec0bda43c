// A pool of generic host workers (perf/workers/host.ts) shared by every system
// that runs its roles through it. Starting a Node worker costs ~30 ms of CPU,
// so spawning 128 of them per (workload, system) would eat the --quick budget;
// leasing lets fan-in and pairs reuse threads across systems. A host that
// failed or timed out is terminated, never returned.

import { Worker, type TransferListItem } from 'node:worker_threads';
import type { RoleCall } from './protocol.js';

const HOST_URL = new URL('./workers/host.js', import.meta.url);
/** How long a fresh host may take to report ready (they start concurrently, on 2 cores). */
export const HOST_START_TIMEOUT_MS = 30_000;

type Pending = { resolve: (v: any) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

export class Host {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private deadReason: Error | null = null;
  /** Loaded role, named in errors so a timeout says who was stuck. */
  private role = 'no role';
  readonly ready: Promise<void>;

  constructor(readonly worker: Worker) {
    // Unref'd so a forgotten host can never keep the process alive; pending
    // RPC timers are ref'd and keep it alive while we actually wait.
    worker.unref();
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('host start timed out')), HOST_START_TIMEOUT_MS);
      worker.once('message', (m: { type?: string }) => {
        clearTimeout(timer);
        if (m?.type === 'ready') resolve();
        else reject(new Error('host sent something before ready'));
      });
      worker.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    this.ready.then(
      () => worker.on('message', (m: { type: string; id: number; value?: unknown; error?: string }) => this.onReply(m)),
      () => {},
    );
    worker.on('error', (e) => this.fail(e instanceof Error ? e : new Error(String(e))));
    worker.on('exit', (code) => this.fail(new Error(`host exited (${code})`)));
  }

  get dead(): boolean {
    return this.deadReason !== null;
  }

  private fail(e: Error): void {
    if (this.deadReason) return;
    this.deadReason = e;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
  }

  private onReply(m: { type: string; id: number; value?: unknown; error?: string }): void {
    if (m.type !== 'reply') return;
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.error !== undefined) p.reject(new Error(m.error));
    else p.resolve(m.value);
  }

  private request<T>(msg: Record<string, unknown>, timeoutMs: number, transfer: readonly TransferListItem[] = []): Promise<T> {
    if (this.deadReason) return Promise.reject(this.deadReason);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        const what = msg.type === 'call' ? `${(msg.cmd as RoleCall).op}` : String(msg.type);
        reject(new Error(`${this.role}: ${what} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.worker.postMessage({ ...msg, id }, transfer as TransferListItem[]);
    });
  }

  load(module: URL, role: string, data: unknown, transfer: readonly TransferListItem[], timeoutMs: number): Promise<void> {
    this.role = `${module.pathname.split('/').pop()} ${role}`;
    return this.request({ type: 'load', module: module.href, role, data }, timeoutMs, transfer);
  }

  call<T>(cmd: RoleCall, timeoutMs: number): Promise<T> {
    return this.request<T>({ type: 'call', cmd }, timeoutMs);
  }

  notify(msg: RoleCall): void {
    if (!this.deadReason) this.worker.postMessage({ type: 'notify', msg });
  }

  async unload(timeoutMs: number): Promise<void> {
    await this.request({ type: 'unload' }, timeoutMs);
    this.role = 'no role';
  }

  async terminate(): Promise<void> {
    this.fail(new Error('terminated'));
    await this.worker.terminate().catch(() => {});
  }
}

export class HostPool {
  private readonly idle: Host[] = [];
  private readonly all = new Set<Host>();

  /** Hosts currently alive (idle or leased). */
  get size(): number {
    return this.all.size;
  }

  async lease(n: number): Promise<Host[]> {
    const out: Host[] = [];
    while (out.length < n && this.idle.length > 0) {
      const h = this.idle.pop()!;
      if (!h.dead) out.push(h);
    }
    const fresh: Host[] = [];
    for (let i = out.length; i < n; i++) {
      const h = new Host(new Worker(HOST_URL));
      this.all.add(h);
      fresh.push(h);
    }
    const started = await Promise.allSettled(fresh.map((h) => h.ready));
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) {
      await this.release([...out, ...fresh], false);
      throw (failed as PromiseRejectedResult).reason;
    }
    return [...out, ...fresh];
  }

  /** healthy=false (or a dead host) terminates instead of pooling. */
  async release(hosts: readonly Host[], healthy: boolean): Promise<void> {
    await Promise.all(
      hosts.map(async (h) => {
        if (healthy && !h.dead) {
          this.idle.push(h);
        } else {
          this.all.delete(h);
          await h.terminate();
        }
      }),
    );
  }

  async close(): Promise<void> {
    const hosts = [...this.all];
    this.all.clear();
    this.idle.length = 0;
    await Promise.all(hosts.map((h) => h.terminate()));
  }
}
