// A pooled host (perf/pool.ts) lent to the `threadbus bench` engine as one peer's thread
// (src/cli/bench/engine.ts PeerThreadHandle): the peer runs as the host's role
// (perf/workers/bench-peer.ts) and talks to the engine over a MessageChannel of its own,
// as a Worker of its own would over its parentPort. Starting 65 workers took 5-6 s of a
// quick run per paced system on 2 cores (each boots Node and imports its modules); the
// pool's hosts are already running.
//
// 'exit' is the role's end (its run over, its peer closed), or the host's death; 'error'
// is a failure to load or run the role. terminate() kills the host: it is never pooled
// again (HostPool.release with healthy=false).

import { EventEmitter } from 'node:events';
import { MessageChannel, type MessagePort, type TransferListItem } from 'node:worker_threads';
import type { PeerThreadHandle, WorkerInit } from '../src/cli/bench/engine.js';
import type { Host } from './pool.js';
import type { BenchPeerData } from './workers/bench-peer.js';

const ROLES = new URL('./workers/bench-peer.js', import.meta.url);
/** A phase runs until it is stopped; setTimeout's longest delay (about 24.8 days). */
const RUN_TIMEOUT_MS = 2 ** 31 - 1;

export class LentThread extends EventEmitter implements PeerThreadHandle {
  readonly #host: Host;
  readonly #port: MessagePort;
  #exited = false;
  /** False once loading or running the role failed, or the host was terminated: do not pool it. */
  healthy = true;

  constructor(host: Host, init: WorkerInit, transfer: TransferListItem[], loadTimeoutMs: number) {
    super();
    this.#host = host;
    const { port1, port2 } = new MessageChannel();
    this.#port = port1;
    port1.on('message', (m: unknown) => this.emit('message', m));
    const data: BenchPeerData = { init, port: port2 };
    host.load(ROLES, 'engine-peer', data, [...transfer, port2], loadTimeoutMs)
      .then(() => host.call({ op: 'run' }, RUN_TIMEOUT_MS))
      .then(() => this.#exit(), (e: unknown) => {
        this.healthy = false;
        this.emit('error', e instanceof Error ? e : new Error(String(e)));
        this.#exit();
      });
  }

  postMessage(m: unknown): void {
    this.#port.postMessage(m);
  }

  async terminate(): Promise<void> {
    this.healthy = false;
    await this.#host.terminate();
    this.#exit();
  }

  #exit(): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#port.close();
    this.emit('exit', this.healthy ? 0 : 1);
  }
}
