// Worker roles for the "threadbus" system: each role opens its own Peer from a
// ticket and moves messages through the bus (sender -> coordinator -> receiver).
// Senders use post() (no promise per message; backpressure blocks while the
// OUT ring is full) and flush() every postWindow posts: messages the quota
// refused (EDQUOT: the receiver is behind) are posted again; receivers use
// tryRecv()/recvSync() and verify every payload in place before release().
// Roles block their host thread while running and watch the control block.

import { Peer, type PeerTicket } from '../../src/index.js';
import {
  ABORT,
  Control,
  DRAIN,
  LatencyRecorder,
  Receipt,
  REQREP_LATENCY_CAPACITY,
  STOP,
  STREAM_LATENCY_CAPACITY,
  makeTemplate,
  nowMs,
  stamp,
  type ClientResult,
  type ControlInit,
  type ReceiverResult,
  type Role,
  type RoleCall,
  type RoleFactory,
  type SenderResult,
  type ServerResult,
} from '../protocol.js';
import type { StreamReceiverCommon, StreamSenderCommon } from './evented.js';

/** How long a receiver sleeps at most before re-checking the control block. */
const RECV_WAIT_MS = 5;

export interface TbStreamSenderData extends StreamSenderCommon {
  readonly ticket: PeerTicket;
  /** The sender's handles to its destinations' nodes (several: one atomic multicast). */
  readonly dests: number[];
  /** 'post': post() in windows and flush(); 'send': plain await send(), SEND_IN_FLIGHT at once. */
  readonly mode: 'post' | 'send';
  /** Posts between two flush() calls (perf/systems/threadbus.ts postWindow). */
  readonly postWindow: number;
}

export interface TbIdlePeersData {
  readonly tickets: PeerTicket[];
}

export interface TbStreamReceiverData extends StreamReceiverCommon {
  readonly ticket: PeerTicket;
  /** False for oneway-64B-send, whose sender resends a refused message later (Receipt). */
  readonly ordered: boolean;
}

export interface TbReqrepData {
  readonly ctl: ControlInit;
  readonly ticket: PeerTicket;
  /** The handle to the other side's node. */
  readonly to: number;
  readonly payloadBytes: number;
}

function aborted(): Error {
  return new Error('aborted by the main thread');
}

/** Every post() of the run must have been accepted, or the run is void. */
async function checkVerdicts(peer: Peer): Promise<void> {
  const { rejected } = await peer.flush();
  if (rejected.length > 0) {
    throw new Error(`threadbus rejected ${rejected.length} messages, first: ${rejected[0]!.error.code} ${rejected[0]!.error.message}`);
  }
}

/** Pause after a refusal (EDQUOT: the receiver is behind) before posting again. */
const BACKOFF_MS = 1;

/** The plain-send sender's window: sends awaited at once. */
const SEND_IN_FLIGHT = 1024;

/**
 * The sender a user writes first: `await peer.send()`, with SEND_IN_FLIGHT sends in
 * flight. A send refused with EDQUOT is sent again (same seq) after BACKOFF_MS; the
 * receivers' limits are far above the window, so that is rare (a receiver starved of CPU
 * on a loaded machine); a retried message arrives out of order, so this workload's
 * receiver checks each message's bytes but not the order of seqs (Receipt `ordered`).
 */
const plainSender = (d: TbStreamSenderData): Role => {
  const peer = Peer.open(d.ticket);
  const i32 = new Control(d.ctl).i32;
  const msg = makeTemplate(d.payloadBytes);
  /** The sends in flight, by seq modulo the window; each slot is awaited before reuse. */
  const window: Array<Promise<void> | undefined> = new Array(SEND_IN_FLIGHT);
  let seq = 0;
  return {
    async call(cmd: RoleCall): Promise<SenderResult> {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      let sent = 0;
      let failure: unknown = null;
      // send() copies the payload before it returns, so one buffer serves every send.
      const sendOne = async (s: number): Promise<void> => {
        for (;;) {
          stamp(msg, 0, d.payloadBytes, s, d.src, NaN);
          try {
            await peer.send(d.dests[0]!, msg);
            sent++;
            return;
          } catch (e) {
            if ((e as { code?: string }).code !== 'EDQUOT') throw e;
            await new Promise((r) => setTimeout(r, BACKOFF_MS));
          }
        }
      };
      for (let i = 0; Atomics.load(i32, STOP) === 0 && failure === null; i = (i + 1) % SEND_IN_FLIGHT) {
        await window[i];
        window[i] = sendOne(seq).catch((e: unknown) => void (failure ??= e));
        seq = (seq + 1) >>> 0;
      }
      await Promise.all(window);
      window.fill(undefined);
      if (failure !== null) throw failure;
      return { sent };
    },
    close: () => peer.close(),
  };
};

/** Peers that are open and do nothing: they only have to exist, on the same bus. */
const idlePeers: RoleFactory = (d: TbIdlePeersData): Role => {
  const peers = d.tickets.map((t) => Peer.open(t));
  return {
    call: () => peers.length,
    close: async () => {
      await Promise.all(peers.map((p) => p.close()));
    },
  };
};

const streamSender: RoleFactory = (d: TbStreamSenderData): Role => {
  if (d.mode === 'send') return plainSender(d);
  const peer = Peer.open(d.ticket);
  const i32 = new Control(d.ctl).i32;
  const len = d.payloadBytes;
  const src = d.src;
  const msg = makeTemplate(len);
  const to: number | number[] = d.dests.length === 1 ? d.dests[0]! : d.dests;
  const mask = d.latencyEvery - 1;
  const stampLatency = d.latencyEvery > 0;
  const window = d.postWindow;
  let seq = 0;
  return {
    async call(cmd: RoleCall): Promise<SenderResult> {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      let sent = 0;
      for (;;) {
        const stop = Atomics.load(i32, STOP) !== 0;
        let posted = 0;
        while (!stop && posted < window && Atomics.load(i32, STOP) === 0) {
          stamp(msg, 0, len, seq, src, stampLatency && (seq & mask) === 0 ? nowMs() : NaN);
          peer.post(to, msg);
          seq = (seq + 1) >>> 0;
          posted++;
        }
        // Refused posts are always the last ones of the window (post() is a stream):
        // rewind and send them again, so every receiver still sees every seq in order.
        const { rejected } = await peer.flush();
        for (const r of rejected) {
          if (r.error.code !== 'EDQUOT') throw new Error(`threadbus refused a message: ${r.error.code} ${r.error.message}`);
        }
        seq = (seq - rejected.length) >>> 0;
        sent += posted - rejected.length;
        if (rejected.length > 0) await new Promise((r) => setTimeout(r, BACKOFF_MS));
        else if (stop || Atomics.load(i32, STOP) !== 0) break;
      }
      return { sent };
    },
    close: () => peer.close(),
  };
};

const streamReceiver: RoleFactory = (d: TbStreamReceiverData): Role => {
  const peer = Peer.open(d.ticket);
  const ctl = new Control(d.ctl);
  const i32 = ctl.i32;
  const expectIdx = ctl.expectBase + d.index;
  const lat = d.latencyEvery > 0 ? new LatencyRecorder(STREAM_LATENCY_CAPACITY) : null;
  const rc = new Receipt(d.sources, d.payloadBytes, ctl, d.index, d.perSource, lat, d.ordered);
  return {
    call(cmd: RoleCall): ReceiverResult {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      lat?.take();
      for (;;) {
        let m = peer.tryRecv();
        while (m !== undefined) {
          rc.check(m.data, 0, m.data.length);
          m.release();
          m = peer.tryRecv();
        }
        if (Atomics.load(i32, DRAIN) !== 0 && rc.total === Atomics.load(ctl.u32, expectIdx)) break;
        if (Atomics.load(i32, ABORT) !== 0) throw aborted();
        m = peer.recvSync(RECV_WAIT_MS);
        if (m !== undefined) {
          rc.check(m.data, 0, m.data.length);
          m.release();
        }
      }
      const l = lat?.take();
      return { total: rc.total, errors: rc.errors, latencyNs: l?.samples ?? null, latencyDropped: l?.dropped ?? 0 };
    },
    close: () => peer.close(),
  };
};

const rrClient: RoleFactory = (d: TbReqrepData): Role => {
  const peer = Peer.open(d.ticket);
  const i32 = new Control(d.ctl).i32;
  const len = d.payloadBytes;
  const msg = makeTemplate(len);
  const rc = new Receipt(1, len, null, 0, false, null);
  const rec = new LatencyRecorder(REQREP_LATENCY_CAPACITY);
  let seq = 0;
  return {
    async call(cmd: RoleCall): Promise<ClientResult> {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      rec.take();
      // One clock read per trip: this reply's arrival is the next request's start.
      let tPrev = performance.now();
      const measureFrom = tPrev + (cmd.rampMs as number);
      const end = measureFrom + (cmd.windowMs as number);
      let trips = 0;
      let firstT0 = 0;
      for (;;) {
        stamp(msg, 0, len, seq, 0, NaN);
        peer.post(d.to, msg);
        seq = (seq + 1) >>> 0;
        let m = peer.recvSync(RECV_WAIT_MS);
        while (m === undefined) {
          if (Atomics.load(i32, ABORT) !== 0) throw aborted();
          m = peer.recvSync(RECV_WAIT_MS);
        }
        rc.check(m.data, 0, m.data.length);
        m.release();
        const t = performance.now();
        if (tPrev >= measureFrom) {
          if (trips === 0) firstT0 = tPrev;
          rec.record((t - tPrev) * 1e6);
          trips++;
          if (t >= end) {
            await checkVerdicts(peer);
            const s = rec.take();
            return { trips, elapsedMs: t - firstT0, errors: rc.errors, samplesNs: s.samples, dropped: s.dropped };
          }
        }
        tPrev = t;
      }
    },
    close: () => peer.close(),
  };
};

const rrServer: RoleFactory = (d: TbReqrepData): Role => {
  const peer = Peer.open(d.ticket);
  const i32 = new Control(d.ctl).i32;
  const len = d.payloadBytes;
  const msg = makeTemplate(len);
  const rc = new Receipt(1, len, null, 0, false, null);
  return {
    async call(cmd: RoleCall): Promise<ServerResult> {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      for (;;) {
        const m = peer.recvSync(RECV_WAIT_MS);
        if (m !== undefined) {
          rc.check(m.data, 0, m.data.length);
          m.release();
          stamp(msg, 0, len, rc.lastSeq, 0, NaN);
          peer.post(d.to, msg);
          continue;
        }
        if (Atomics.load(i32, STOP) !== 0) break;
        if (Atomics.load(i32, ABORT) !== 0) throw aborted();
      }
      await checkVerdicts(peer);
      return { served: rc.total, errors: rc.errors };
    },
    close: () => peer.close(),
  };
};

export const roles: Record<string, RoleFactory> = {
  'stream-sender': streamSender,
  'stream-receiver': streamReceiver,
  'rr-client': rrClient,
  'rr-server': rrServer,
  'idle-peers': idlePeers,
};
