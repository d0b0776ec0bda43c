// System "broadcastchannel": Node's BroadcastChannel, the built-in one-to-many
// primitive (multicast-8), also run one-way for a point of reference.

import { BroadcastChannel, MessageChannel, type MessagePort } from 'node:worker_threads';
import { flowControl, hostedStream, idleSession, type IdlePeers, type StreamWiring } from '../drivers.js';
import type { BenchSystem } from '../harness.js';
import type { BcStreamReceiverData, BcStreamSenderData } from '../workers/broadcastchannel.js';

const ROLES = new URL('../workers/broadcastchannel.js', import.meta.url);
let channels = 0;

const wiring: StreamWiring = {
  roles: ROLES,
  wire(shape, ctl) {
    if (shape.senders !== 1) throw new Error('broadcastchannel wiring supports one sender');
    // Unique per session: a leftover channel of an earlier session must not hear this one.
    const channel = `threadbus-bench-${process.pid}-${channels++}`;
    const fc = flowControl(shape);
    const acks = Array.from({ length: shape.receivers }, () => new MessageChannel());
    const sender: BcStreamSenderData = {
      ctl,
      src: 0,
      payloadBytes: shape.payloadBytes,
      latencyEvery: shape.latencyEvery,
      channel,
      ackPorts: acks.map((a) => a.port1),
      windowMsgs: fc.windowMsgs,
    };
    return {
      senders: [{ data: sender, transfer: sender.ackPorts }],
      receivers: acks.map((a, index) => {
        const data: BcStreamReceiverData = {
          ctl,
          index,
          sources: 1,
          payloadBytes: shape.payloadBytes,
          perSource: shape.perSource,
          latencyEvery: shape.latencyEvery,
          channel,
          ackPort: a.port2,
          ackEvery: fc.ackEvery,
        };
        return { data, transfer: [a.port2] };
      }),
    };
  },
};

/** idle-peer-memory: a peer is one open, listening BroadcastChannel (all on one name). */
export function idlePeers(n: number): IdlePeers {
  const chans: BroadcastChannel[] = [];
  const noop = () => {};
  for (let i = 0; i < n; i++) {
    const bc = new BroadcastChannel('threadbus-bench-idle');
    bc.onmessage = noop;
    bc.unref();
    chans.push(bc);
  }
  return { close: () => chans.forEach((c) => c.close()) };
}

export const system: BenchSystem = {
  name: 'broadcastchannel',
  description: 'BroadcastChannel.postMessage (clone per receiver), acks on a MessagePort',
  workloads: {
    'oneway-64B': (ctx) => hostedStream(ctx, 'oneway-64B', wiring),
    'oneway-1KiB': (ctx) => hostedStream(ctx, 'oneway-1KiB', wiring),
    'oneway-64KiB': (ctx) => hostedStream(ctx, 'oneway-64KiB', wiring),
    'multicast-8': (ctx) => hostedStream(ctx, 'multicast-8', wiring),
    'idle-peer-memory': (ctx) => idleSession(ctx, import.meta.url, 'idlePeers'),
  },
};
