// System "sab-ring": bare SharedArrayBuffer SPSC rings (perf/sab-ring.ts), one
// per sender->receiver edge, no accounting: the physical limit for moving
// bytes between workers on this machine, against which threadbus's overhead
// is judged.

import {
  IN_FLIGHT_BYTES_PER_RECEIVER,
  REQREP_PAYLOAD_BYTES,
  hostedReqrep,
  hostedStream,
  idleSession,
  maxFanIn,
  type IdlePeers,
  type StreamShape,
  type StreamWiring,
} from '../drivers.js';
import type { BenchSystem } from '../harness.js';
import { createDoorbell, createRing, Doorbell, RingReader, type RingInit } from '../sab-ring.js';
import type { SabReqrepData, SabStreamReceiverData, SabStreamSenderData } from '../workers/sab-ring.js';

const ROLES = new URL('../workers/sab-ring.js', import.meta.url);
/** Request/reply never has more than one message in flight. */
const REQREP_RING_BYTES = 1 << 12;
/** An idle peer's inbox: the size a fan-in-64 edge gets from the shared in-flight budget. */
const IDLE_RING_BYTES = 1 << 14;

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(n));

/** Each edge's ring holds its share of the receiver's in-flight budget (and at least two records). */
function ringBytes(shape: StreamShape): number {
  return nextPow2(Math.max(IN_FLIGHT_BYTES_PER_RECEIVER / maxFanIn(shape), 4 * (shape.payloadBytes + 8)));
}

const wiring: StreamWiring = {
  roles: ROLES,
  wire(shape, ctl) {
    const cap = ringBytes(shape);
    const bells = Array.from({ length: shape.receivers }, () => createDoorbell());
    const out: RingInit[][] = Array.from({ length: shape.senders }, () => []);
    const inb: RingInit[][] = Array.from({ length: shape.receivers }, () => []);
    for (let s = 0; s < shape.senders; s++) {
      for (const r of shape.dests(s)) {
        const ring = createRing(cap, bells[r]!);
        out[s]!.push(ring);
        inb[r]!.push(ring);
      }
    }
    return {
      senders: out.map((rings, src): { data: SabStreamSenderData } => ({
        data: { ctl, src, payloadBytes: shape.payloadBytes, latencyEvery: shape.latencyEvery, rings },
      })),
      receivers: inb.map((rings, index): { data: SabStreamReceiverData } => ({
        data: {
          ctl,
          index,
          sources: shape.senders,
          payloadBytes: shape.payloadBytes,
          perSource: shape.perSource,
          latencyEvery: shape.latencyEvery,
          rings,
          bell: bells[index]!,
        },
      })),
      wake: () => bells.forEach((b) => new Doorbell(b).wake()),
    };
  },
};

/**
 * idle-peer-memory: a peer is an inbox ring (IDLE_RING_BYTES) with its
 * doorbell and reader. RSS only counts touched pages, so the reserved size
 * is reported alongside.
 */
export function idlePeers(n: number): IdlePeers {
  const peers: RingReader[] = [];
  let reserved = 0;
  for (let i = 0; i < n; i++) {
    const ring = createRing(IDLE_RING_BYTES);
    reserved = ring.sab.byteLength + ring.bell.byteLength;
    peers.push(new RingReader(ring));
  }
  return {
    close: () => void peers.splice(0), // also keeps `peers` reachable until measured
    extra: { reservedBytesPerPeer: reserved },
  };
}

export const system: BenchSystem = {
  name: 'sab-ring',
  description: 'bare SharedArrayBuffer SPSC ring per edge, spin-then-Atomics.wait (physical limit)',
  workloads: {
    'oneway-64B': (ctx) => hostedStream(ctx, 'oneway-64B', wiring),
    'oneway-1KiB': (ctx) => hostedStream(ctx, 'oneway-1KiB', wiring),
    'oneway-64KiB': (ctx) => hostedStream(ctx, 'oneway-64KiB', wiring),
    'multicast-8': (ctx) => hostedStream(ctx, 'multicast-8', wiring),
    'fanin-64': (ctx) => hostedStream(ctx, 'fanin-64', wiring),
    'pairs-64': (ctx) => hostedStream(ctx, 'pairs-64', wiring),
    reqrep: (ctx) =>
      hostedReqrep(ctx, {
        roles: ROLES,
        wire(ctl) {
          const requests = createRing(REQREP_RING_BYTES);
          const replies = createRing(REQREP_RING_BYTES);
          const data: SabReqrepData = { ctl, requests, replies, payloadBytes: REQREP_PAYLOAD_BYTES };
          return {
            client: { data },
            server: { data },
            wake: () => [requests.bell, replies.bell].forEach((b) => new Doorbell(b).wake()),
          };
        },
      }),
    'idle-peer-memory': (ctx) => idleSession(ctx, import.meta.url, 'idlePeers'),
  },
};
