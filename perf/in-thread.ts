// A coordinator and its peers in ONE thread, driven by hand (coordinator.runOnce()):
// for measurements that must not depend on other cores (perf/hot-loop.ts) and for tests
// that need the coordinator to find a known set of records in a ring at once
// (test/runs.test.ts). Not a way to run a bus: nothing here watches threads or sleeps.

import { threadId } from 'node:worker_threads';
import { Coordinator } from '../src/coordinator/coordinator.js';
import { DEFAULT_QUOTA_RULE } from '../src/coordinator/quota.js';
import type { Limits } from '../src/coordinator/ledger.js';
import { Peer, type PeerTicket } from '../src/index.js';
import { setLocalCoordinator } from '../src/peer/watch.js';

export interface InThreadBus {
  readonly coordinator: Coordinator;
  /** A peer of `uid`, opened in this thread; its coordinator-side id is `peer.id`. */
  open(uid: number, limits?: Partial<Limits>): { peer: Peer; id: number };
  /** A new node owned by peer `owner`, and `holder`'s handle to it. */
  handleTo(owner: number, holder: number): number;
}

export function inThreadBus(users: Record<number, Partial<Limits>> = {}, userLimits?: Limits): InThreadBus {
  const coordinator = new Coordinator({
    userLimits: userLimits ?? { messages: 1 << 16, handles: 1 << 16, bytes: 2 ** 31 },
    peerLimits: {},
    users: new Map(Object.entries(users).map(([k, v]) => [Number(k), v])),
    quota: DEFAULT_QUOTA_RULE,
    maxMessageBytes: 1 << 20,
  });
  // This thread's death watch (which also carries pool segments) goes straight to this coordinator.
  setLocalCoordinator((port) => coordinator.watchThread(threadId, port, () => undefined));
  return {
    coordinator,
    open(uid, limits) {
      const created = coordinator.createPeer(uid, limits);
      const ticket: PeerTicket = {
        kind: 'threadbus.ticket', ...created, doorbell: coordinator.doorbell, busThread: threadId, port: null, transfer: [],
      };
      return { peer: Peer.open(ticket), id: created.peerId };
    },
    handleTo(owner, holder) {
      const o = coordinator.peerById(owner);
      return coordinator.transferHandle(o, coordinator.ownerCreateNode(o), coordinator.peerById(holder));
    },
  };
}
