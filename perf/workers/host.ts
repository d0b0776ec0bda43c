// Generic worker entry point for the pooled bench hosts (see perf/pool.ts): it
// loads one role at a time from a role module (`export const roles`) and relays
// the main thread's calls to it. Roles may block this thread (spin loops); the
// host then answers when the role returns.

import { parentPort } from 'node:worker_threads';
import type { Role, RoleCall, RoleFactory } from '../protocol.js';

type Request =
  | { type: 'load'; id: number; module: string; role: string; data: unknown }
  | { type: 'call'; id: number; cmd: RoleCall }
  | { type: 'notify'; msg: RoleCall }
  | { type: 'unload'; id: number };

const port = parentPort!;
let role: Role | null = null;

function reply(id: number, value: unknown): void {
  port.postMessage({ type: 'reply', id, value });
}

function replyError(id: number, e: unknown): void {
  port.postMessage({ type: 'reply', id, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
}

port.on('message', async (m: Request) => {
  switch (m.type) {
    case 'load':
      try {
        if (role) throw new Error('host already has a role');
        const mod = (await import(m.module)) as { roles?: Record<string, RoleFactory> };
        const factory = mod.roles?.[m.role];
        if (!factory) throw new Error(`${m.module} has no role ${m.role}`);
        role = await factory(m.data);
        reply(m.id, null);
      } catch (e) {
        replyError(m.id, e);
      }
      return;
    case 'call':
      try {
        if (!role) throw new Error('no role loaded');
        reply(m.id, await role.call(m.cmd));
      } catch (e) {
        replyError(m.id, e);
      }
      return;
    case 'notify':
      role?.notify?.(m.msg);
      return;
    case 'unload':
      try {
        const r = role;
        role = null;
        await r?.close();
        reply(m.id, null);
      } catch (e) {
        replyError(m.id, e);
      }
      return;
  }
});

port.postMessage({ type: 'ready' });
