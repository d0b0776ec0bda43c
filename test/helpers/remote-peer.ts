/*
 * Test-side handle on a peer running in its own worker (test/fixtures/remote-peer.ts).
 * Every call returns a promise; BusErrors come back rebuilt (instanceof BusError, .code).
 * Use withBus() so that every worker is terminated and the bus closed, pass or fail.
 */

import { Worker } from 'node:worker_threads';
import type { ExecutionContext } from 'ava';
import { Bus, type BusOptions, type PeerTicket } from '../../src/index.js';
import { RpcClient } from './rpc-client.js';
import type { MessageSummary } from '../fixtures/remote-peer.js';

export type { MessageSummary };

export class RemotePeer extends RpcClient {
  readonly ticket: PeerTicket;

  private constructor(worker: Worker, ticket: PeerTicket) {
    super(worker, false); // crashes are provoked on purpose; `exited` tells
    this.ticket = ticket;
  }

  static async spawn(ticket: PeerTicket): Promise<RemotePeer> {
    const worker = new Worker(new URL('../fixtures/remote-peer.js', import.meta.url), {
      workerData: { ticket }, transferList: ticket.transfer as never,
    });
    const rp = new RemotePeer(worker, ticket);
    await rp.ready();
    return rp;
  }

  createNode(): Promise<number> { return this.call('createNode'); }
  releaseHandle(h: number): Promise<void> { return this.call('releaseHandle', h); }
  destroyNodes(hs: number[]): Promise<void> { return this.call('destroyNodes', hs); }
  query(): Promise<{ limits: any; remaining: any }> { return this.call('query'); }
  send(to: number | number[], data: string | number[], opts?: { handles?: number[]; partial?: true }): Promise<any> {
    return this.call('send', to, data, opts);
  }
  sendMany(to: number | number[], count: number, data = 'm', opts?: { handles?: number[] }) {
    return this.call<{ ok: number; error: any }>('sendMany', to, count, data, opts);
  }
  sendUntilRefused(to: number, max: number, data = 'x', opts?: { handles?: number[] }) {
    return this.call<{ sent: number; error: any }>('sendUntilRefused', to, max, data, opts);
  }
  recv(opts?: { keep?: boolean; timeoutMs?: number }): Promise<MessageSummary> { return this.call('recv', opts); }
  tryRecv(opts?: { keep?: boolean }): Promise<MessageSummary | null> { return this.call('tryRecv', opts); }
  recvMany(count: number, opts?: { keep?: boolean; timeoutMs?: number }): Promise<MessageSummary[]> {
    return this.call('recvMany', count, opts);
  }
  releaseKept(n?: number): Promise<number> { return this.call('releaseKept', n); }
  close(): Promise<void> { return this.call('close'); }
  isOpen(): Promise<boolean> { return this.call('isOpen'); }
  crash(how: 'throw' | 'exit'): void { void this.call('crash', how).catch(() => undefined); }
  terminate(): Promise<number> { return this.worker.terminate(); }
}

/** A bus and peers for one test, all torn down when the test ends. */
export class TestBus {
  readonly bus: Bus;
  readonly peers: RemotePeer[] = [];
  private constructor(bus: Bus) { this.bus = bus; }

  static async start(t: ExecutionContext, opts?: BusOptions): Promise<TestBus> {
    const tb = new TestBus(await Bus.start(opts));
    t.teardown(async () => {
      await Promise.all(tb.peers.map((p) => p.terminate()));
      await tb.bus.close().catch(() => undefined);
    });
    return tb;
  }

  /** A peer of `uid` in its own worker. */
  async peer(uid: number, limits?: { messages?: number; handles?: number; bytes?: number }): Promise<RemotePeer> {
    const ticket = await this.bus.createPeer({ uid, limits });
    const p = await RemotePeer.spawn(ticket);
    this.peers.push(p);
    return p;
  }

  /** A node owned by `owner`, and a handle to it given to each of `holders`; returns [ownerId, ...holderIds]. */
  async node(owner: RemotePeer, ...holders: RemotePeer[]): Promise<number[]> {
    const id = await owner.createNode();
    const ids = [id];
    for (const h of holders) ids.push(await this.bus.transferHandle(owner.ticket, id, h.ticket));
    return ids;
  }
}

/** Resolve within `ms` or fail with `what`. */
export async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
