// Role module for the pooled hosts (perf/workers/host.ts): one peer of a `threadbus
// bench` engine phase (src/cli/bench/engine.ts), run in a thread the benchmark already
// has instead of a Worker of its own (perf/paced.ts lends them, so fanin-64-paced does
// not start 65 threads per system). The peer reports and takes its start on `port`, as
// it would on its parentPort; call() settles when its run is over and its peer closed,
// which is the engine's 'exit' (perf/lent-thread.ts).

import type { MessagePort } from 'node:worker_threads';
import type { Role, RoleFactory } from '../protocol.js';
import { runPeer, type WorkerInit } from '../../src/cli/bench/run-peer.js';

export interface BenchPeerData {
  readonly init: WorkerInit;
  readonly port: MessagePort;
}

const enginePeer: RoleFactory = (d: BenchPeerData): Role => {
  const finished = runPeer(d.init, d.port).finally(() => d.port.close());
  finished.catch(() => {});
  return {
    call: async () => {
      await finished;
      return null;
    },
    close: () => finished.catch(() => undefined),
  };
};

export const roles: Record<string, RoleFactory> = { 'engine-peer': enginePeer };
