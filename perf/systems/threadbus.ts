// System "threadbus": the library itself. The bench's main thread is the bus
// owner: it starts a Bus per session, mints one ticket per role, creates each
// receiver's node and hands the senders their handles; the roles
// (workers/threadbus.ts) open their peers in the pooled host workers. Every
// message goes sender -> coordinator (validation, quota, global order) ->
// receiver, so this measures the whole bus, not a bare ring.
//
// Limits: receivers get a messages limit of RECEIVER_MESSAGES so that the
// in-flight budget is bytes (16 MiB per receiving user, 64 MiB for 64 KiB
// payloads, of which one sending uid may hold half: more than the 1 MiB the
// other systems get; a sender that outruns its receiver by that much gets
// EDQUOT, which fails the run rather than being hidden); senders get
// small peer limits since they receive nothing. fanin-64's senders share one
// uid, as the workers of one load test would: one share, no 1/2^k cascade.

import { Bus, Peer, type PeerTicket } from '../../src/index.js';
import {
  REQREP_PAYLOAD_BYTES,
  STREAM_SHAPES,
  inFlightShare,
  hostedReqrep,
  hostedStream,
  idleSession,
  type IdlePeers,
  type StreamWorkload,
} from '../drivers.js';
import type { BenchContext, BenchSystem, Session } from '../harness.js';
import { pacedFanin } from '../paced.js';
import { requestPair } from '../pair.js';
import type { Host } from '../pool.js';
import type { TbIdlePeersData, TbReqrepData, TbStreamReceiverData, TbStreamSenderData } from '../workers/threadbus.js';

const ROLES = new URL('../workers/threadbus.js', import.meta.url);
const RECEIVER_MESSAGES = 1 << 18;
export const SENDER_LIMITS = { messages: 64, handles: 64, bytes: 64 * 1024 };
const SENDER_UID_BASE = 1;
/** Peers created at once by idlePeers() and idleOnBus(). */
const IDLE_BATCH = 100;
/** oneway-64B-idle1000: idle peers on the bus, opened in this many host threads. */
const IDLE_ON_BUS = 1000;
const IDLE_THREADS = 2;
const IDLE_UID = 50_000;
const RECEIVER_UID_BASE = 100_000;

/** 64 KiB payloads get a larger byte budget, so that 16 MiB (128 messages in flight) is not all that is measured. */
const LARGE_PAYLOAD_BYTES_LIMIT = 64 * 1024 * 1024;

/**
 * Small messages get a small maximum, hence small OUT rings: less queued at STOP to drain.
 * 64 KiB messages get the bus's default maximum (1 MiB, a 2 MiB OUT ring): with a maximum
 * of 64 KiB the ring would be 128 KiB, room for one such record at a time (an OUT ring
 * holds one largest record: shared/layout.ts outRingBytes).
 */
const SMALL_MAX_MESSAGE_BYTES = 2048;

/** Posts between two flush() calls, most and fewest (postWindow). */
const POST_WINDOW_MAX = 32768;
const POST_WINDOW_MIN = 256;
/**
 * Most posts between two flush() calls where a workload has several senders: the credit
 * window the other systems get at most (perf/drivers.ts flowControl). With 16384 posts a
 * window, pairs-64's 64 senders kept a million messages in flight: each run drained for
 * 2.5-3.4 s after STOP (the quick run went past its 120 s), and measured no faster
 * (237 and 28 k/s against 320 and 201 k/s with 1024, alternating runs, December 2026).
 */
const POST_WINDOW_MANY_MAX = 1024;

/**
 * A sender's posts between two flush() calls: its share of the in-flight budget that every
 * system gets (IN_FLIGHT_BYTES_PER_RECEIVER over the receiver's senders), within bounds.
 * After a refusal every later post of the window is refused too (post() is a stream) and
 * costs the coordinator as much as an accepted one: with 32768-post windows, fanin-64's
 * 64 senders, once warm, buried their receiver in refusals and most quick runs measured
 * 0 msgs/s; with their 256-post share, 1.7-2.3 M/s and no empty run (December 2026).
 */
function postWindow(workload: StreamWorkload): number {
  const shape = STREAM_SHAPES[workload];
  const share = Math.floor(inFlightShare(shape));
  return Math.max(POST_WINDOW_MIN, Math.min(shape.senders > 1 ? POST_WINDOW_MANY_MAX : POST_WINDOW_MAX, share));
}

/** The bus of a workload whose messages carry `payloadBytes` (also perf/pairs-cpu.ts, so that it measures the same bus). */
export function startBus(payloadBytes: number): Promise<Bus> {
  const large = payloadBytes > SMALL_MAX_MESSAGE_BYTES;
  return Bus.start({
    userLimits: { messages: RECEIVER_MESSAGES, bytes: large ? LARGE_PAYLOAD_BYTES_LIMIT : undefined },
    maxMessageBytes: large ? undefined : SMALL_MAX_MESSAGE_BYTES,
  });
}

/** Close the roles' session first (their peers close), then the idle peers' hosts, then the bus. */
function withBus(ctx: BenchContext, bus: Bus, session: Session, idleHosts: readonly Host[] = []): Session {
  return {
    run: (p) => session.run(p),
    close: async (failed) => {
      try {
        await session.close(failed);
        await unloadIdle(ctx, idleHosts, failed);
      } finally {
        await bus.close().catch(() => undefined);
      }
    },
  };
}

/** Tickets for n peers, each with a node, created in batches (the owner's round trips overlap). */
export async function createIdle(bus: Bus, n: number, uid: (i: number) => number): Promise<PeerTicket[]> {
  const out: PeerTicket[] = [];
  for (let i = 0; i < n; i += IDLE_BATCH) {
    const batch = Array.from({ length: Math.min(IDLE_BATCH, n - i) }, async (_, j) => {
      const t = await bus.createPeer({ uid: uid(i + j) });
      await bus.createNode(t);
      return t;
    });
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

/** IDLE_ON_BUS real, open peers on `bus`, idling in IDLE_THREADS pooled hosts. */
async function idleOnBus(ctx: BenchContext, bus: Bus): Promise<Host[]> {
  const tickets = await createIdle(bus, IDLE_ON_BUS, () => IDLE_UID);
  const hosts = await ctx.pool.lease(IDLE_THREADS);
  try {
    const per = Math.ceil(tickets.length / hosts.length);
    await Promise.all(hosts.map((h, i) => {
      const mine = tickets.slice(i * per, (i + 1) * per);
      const data: TbIdlePeersData = { tickets: mine };
      return h.load(ROLES, 'idle-peers', data, mine.flatMap((t) => t.transfer), ctx.tunables.setupTimeoutMs);
    }));
  } catch (e) {
    await ctx.pool.release(hosts, false);
    throw e;
  }
  return hosts;
}

async function unloadIdle(ctx: BenchContext, hosts: readonly Host[], failed: boolean): Promise<void> {
  if (hosts.length === 0) return;
  const ok = !failed && (await Promise.all(hosts.map((h) => h.unload(ctx.tunables.closeTimeoutMs).then(() => true, () => false))))
    .every(Boolean);
  await ctx.pool.release(hosts, ok);
}

async function stream(ctx: BenchContext, workload: StreamWorkload): Promise<Session> {
  const shape = STREAM_SHAPES[workload];
  const bus = await startBus(shape.payloadBytes);
  let idleHosts: Host[] = [];
  try {
    if (workload === 'oneway-64B-idle1000') idleHosts = await idleOnBus(ctx, bus);
    const receivers: PeerTicket[] = [];
    const nodes: number[] = [];
    for (let r = 0; r < shape.receivers; r++) {
      const t = await bus.createPeer({ uid: RECEIVER_UID_BASE + r });
      receivers.push(t);
      nodes.push(await bus.createNode(t));
    }
    const senders: { ticket: PeerTicket; dests: number[] }[] = [];
    for (let s = 0; s < shape.senders; s++) {
      const uid = workload === 'fanin-64' ? SENDER_UID_BASE : SENDER_UID_BASE + s;
      const ticket = await bus.createPeer({ uid, limits: SENDER_LIMITS });
      const dests: number[] = [];
      for (const r of shape.dests(s)) dests.push(await bus.transferHandle(receivers[r]!, nodes[r]!, ticket));
      senders.push({ ticket, dests });
    }
    const session = await hostedStream(ctx, workload, {
      roles: ROLES,
      wire: (sh, ctl) => ({
        senders: senders.map(({ ticket, dests }, src) => ({
          data: {
            ctl, src, payloadBytes: sh.payloadBytes, latencyEvery: sh.latencyEvery, ticket, dests,
            mode: workload === 'oneway-64B-send' ? 'send' : 'post', postWindow: postWindow(workload),
          } satisfies TbStreamSenderData,
          transfer: ticket.transfer,
        })),
        receivers: receivers.map((ticket, index) => ({
          data: {
            ctl, index, sources: sh.senders, payloadBytes: sh.payloadBytes, perSource: sh.perSource,
            latencyEvery: sh.latencyEvery, ticket, ordered: workload !== 'oneway-64B-send',
          } satisfies TbStreamReceiverData,
          transfer: ticket.transfer,
        })),
      }),
    });
    return withBus(ctx, bus, session, idleHosts);
  } catch (e) {
    await unloadIdle(ctx, idleHosts, true);
    await bus.close().catch(() => undefined);
    throw e;
  }
}

async function reqrep(ctx: BenchContext): Promise<Session> {
  const bus = await startBus(REQREP_PAYLOAD_BYTES);
  try {
    const { client, server, toServer, toClient } = await requestPair(bus, SENDER_UID_BASE, RECEIVER_UID_BASE);
    const session = await hostedReqrep(ctx, {
      roles: ROLES,
      wire: (ctl) => ({
        client: {
          data: { ctl, ticket: client, to: toServer, payloadBytes: REQREP_PAYLOAD_BYTES } satisfies TbReqrepData,
          transfer: client.transfer,
        },
        server: {
          data: { ctl, ticket: server, to: toClient, payloadBytes: REQREP_PAYLOAD_BYTES } satisfies TbReqrepData,
          transfer: server.transfer,
        },
      }),
    });
    return withBus(ctx, bus, session);
  } catch (e) {
    await bus.close().catch(() => undefined);
    throw e;
  }
}

/** Once per measuring process, before its first reading: the bus (its coordinator thread is not a per-peer cost). */
export function idlePeersSetup(): Promise<Bus> {
  return Bus.start();
}

/**
 * idle-peer-memory: n opened peers with the bus's default limits (16384 messages,
 * 65536 handles, 16 MiB, 1 MiB messages), each with a node, in this process. RSS
 * counts what they and the coordinator really touched; the address space reserved for
 * each peer's rings and pool is reported apart, since untouched pages cost nothing.
 * An idle peer has received nothing, so it has no pool segment beyond the first, which
 * is inside its buffer: that one buffer is all it reserves.
 */
export async function idlePeers(n: number, started?: unknown): Promise<IdlePeers> {
  const bus = started instanceof Bus ? started : await Bus.start();
  const tickets = await createIdle(bus, n, (i) => i);
  const peers = tickets.map((t) => Peer.open(t));
  return {
    close: () => void Promise.allSettled(peers.map((p) => p.close())).then(() => bus.close()),
    extra: { reservedBytesPerPeer: tickets[0]!.inSab.byteLength },
  };
}

export const system: BenchSystem = {
  name: 'threadbus',
  description: 'threadbus: sender -> coordinator (validate, quota, order) -> receiver over SAB rings',
  workloads: {
    'oneway-64B': (ctx) => stream(ctx, 'oneway-64B'),
    'oneway-64B-send': (ctx) => stream(ctx, 'oneway-64B-send'),
    'oneway-64B-idle1000': (ctx) => stream(ctx, 'oneway-64B-idle1000'),
    'fanin-64-paced': pacedFanin('threadbus'),
    'oneway-1KiB': (ctx) => stream(ctx, 'oneway-1KiB'),
    'oneway-64KiB': (ctx) => stream(ctx, 'oneway-64KiB'),
    'multicast-8': (ctx) => stream(ctx, 'multicast-8'),
    'fanin-64': (ctx) => stream(ctx, 'fanin-64'),
    'pairs-64': (ctx) => stream(ctx, 'pairs-64'),
    reqrep: (ctx) => reqrep(ctx),
    'idle-peer-memory': (ctx) => idleSession(ctx, import.meta.url, 'idlePeers'),
  },
};
