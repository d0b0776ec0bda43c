/*
 * The post()/flush() sender of test/fixtures/post-peer.ts in its own worker, and a call
 * that sends it one command and waits for its report. The worker is terminated and the
 * bus closed at the end of the test.
 */

import type { ExecutionContext } from 'ava';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import type { Bus, PeerTicket } from '../../src/index.js';

export interface FlushResult { posted: number; rejected: { index: number; code: string; resource?: string; uid?: number }[] }

export function startPostWorker(t: ExecutionContext, bus: Bus, ticket: PeerTicket, to: number | number[]): (cmd: object) => Promise<FlushResult> {
  const worker = new Worker(new URL('../fixtures/post-peer.js', import.meta.url), { workerData: { ticket, to }, transferList: ticket.transfer as never });
  t.teardown(async () => {
    await worker.terminate();
    await bus.close().catch(() => undefined);
  });
  return async (cmd) => {
    worker.postMessage(cmd);
    const [r] = await once(worker, 'message');
    return r as FlushResult;
  };
}
