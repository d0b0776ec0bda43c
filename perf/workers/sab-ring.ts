// Worker roles for the "sab-ring" system: bare SPSC rings (perf/sab-ring.ts),
// one per sender->receiver edge. Senders copy the payload into the ring,
// receivers verify it in place; the hot loops allocate nothing. These roles
// block their host thread while running and watch the control block instead
// of messages.

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
import { Doorbell, RingReader, RingWriter, awaitData, type RingInit } from '../sab-ring.js';
import type { StreamReceiverCommon, StreamSenderCommon } from './evented.js';

/** Records taken from one ring before visiting the next, so fan-in polls round robin. */
const BATCH_RECORDS = 256;

export interface SabStreamSenderData extends StreamSenderCommon {
  /** One ring per destination; multicast writes every message into each. */
  readonly rings: RingInit[];
}

export interface SabStreamReceiverData extends StreamReceiverCommon {
  /** One ring per upstream sender, all sharing this receiver's doorbell. */
  readonly rings: RingInit[];
  readonly bell: SharedArrayBuffer;
}

export interface SabReqrepData {
  readonly ctl: ControlInit;
  readonly requests: RingInit;
  readonly replies: RingInit;
  readonly payloadBytes: number;
}

function aborted(): Error {
  return new Error('aborted by the main thread');
}

const streamSender: RoleFactory = (d: SabStreamSenderData): Role => {
  const i32 = new Control(d.ctl).i32;
  const writers = d.rings.map((r) => new RingWriter(r));
  const n = writers.length;
  const len = d.payloadBytes;
  const src = d.src;
  const tpl = makeTemplate(len);
  if (len > writers[0]!.maxPayload) throw new RangeError('payload larger than half the ring');
  const mask = d.latencyEvery - 1;
  const stampLatency = d.latencyEvery > 0;
  let seq = 0;
  return {
    call(cmd: RoleCall): SenderResult {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      let sent = 0;
      while (Atomics.load(i32, STOP) === 0) {
        const t = stampLatency && (seq & mask) === 0 ? nowMs() : NaN;
        for (let i = 0; i < n; i++) {
          const w = writers[i]!;
          let off = w.claim(len);
          if (off < 0 && (off = w.claimWait(len, i32, ABORT)) < 0) throw aborted();
          w.data.set(tpl, off);
          stamp(w.data, off, len, seq, src, t);
          w.publish();
        }
        seq = (seq + 1) >>> 0;
        sent++;
      }
      return { sent };
    },
    close() {},
  };
};

const streamReceiver: RoleFactory = (d: SabStreamReceiverData): Role => {
  const ctl = new Control(d.ctl);
  const i32 = ctl.i32;
  const expectIdx = ctl.expectBase + d.index;
  const readers = d.rings.map((r) => new RingReader(r));
  const bell = new Doorbell(d.bell);
  const lat = d.latencyEvery > 0 ? new LatencyRecorder(STREAM_LATENCY_CAPACITY) : null;
  const rc = new Receipt(d.sources, d.payloadBytes, ctl, d.index, d.perSource, lat);
  return {
    call(cmd: RoleCall): ReceiverResult {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      lat?.take();
      const n = readers.length;
      for (;;) {
        let got = 0;
        for (let i = 0; i < n; i++) {
          const r = readers[i]!;
          let k = 0;
          let len = 0;
          while (k < BATCH_RECORDS && (len = r.tryRead()) >= 0) {
            rc.check(r.data, r.offset, len);
            k++;
          }
          got += k;
        }
        if (got !== 0) continue;
        if (Atomics.load(i32, DRAIN) !== 0 && rc.total === Atomics.load(ctl.u32, expectIdx)) break;
        if (Atomics.load(i32, ABORT) !== 0) throw aborted();
        awaitData(readers, bell);
      }
      const l = lat?.take();
      return { total: rc.total, errors: rc.errors, latencyNs: l?.samples ?? null, latencyDropped: l?.dropped ?? 0 };
    },
    close() {},
  };
};

const rrClient: RoleFactory = (d: SabReqrepData): Role => {
  const i32 = new Control(d.ctl).i32;
  const w = new RingWriter(d.requests);
  const r = new RingReader(d.replies);
  const readers = [r];
  const bell = new Doorbell(d.replies.bell);
  const len = d.payloadBytes;
  const tpl = makeTemplate(len);
  const rc = new Receipt(1, len, null, 0, false, null);
  const rec = new LatencyRecorder(REQREP_LATENCY_CAPACITY);
  let seq = 0;
  return {
    call(cmd: RoleCall): ClientResult {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      rec.take();
      // One clock read per trip: this reply's arrival is the next request's start.
      let tPrev = performance.now();
      const measureFrom = tPrev + (cmd.rampMs as number);
      const end = measureFrom + (cmd.windowMs as number);
      let trips = 0;
      let firstT0 = 0;
      for (;;) {
        let off = w.claim(len);
        if (off < 0 && (off = w.claimWait(len, i32, ABORT)) < 0) throw aborted();
        w.data.set(tpl, off);
        stamp(w.data, off, len, seq, 0, NaN);
        w.publish();
        seq = (seq + 1) >>> 0;
        let rl = 0;
        while ((rl = r.tryRead()) < 0) {
          if (Atomics.load(i32, ABORT) !== 0) throw aborted();
          awaitData(readers, bell);
        }
        rc.check(r.data, r.offset, rl);
        const t = performance.now();
        if (tPrev >= measureFrom) {
          if (trips === 0) firstT0 = tPrev;
          rec.record((t - tPrev) * 1e6);
          trips++;
          if (t >= end) {
            const s = rec.take();
            return { trips, elapsedMs: t - firstT0, errors: rc.errors, samplesNs: s.samples, dropped: s.dropped };
          }
        }
        tPrev = t;
      }
    },
    close() {},
  };
};

const rrServer: RoleFactory = (d: SabReqrepData): Role => {
  const i32 = new Control(d.ctl).i32;
  const r = new RingReader(d.requests);
  const readers = [r];
  const bell = new Doorbell(d.requests.bell);
  const w = new RingWriter(d.replies);
  const len = d.payloadBytes;
  const tpl = makeTemplate(len);
  const rc = new Receipt(1, len, null, 0, false, null);
  return {
    call(cmd: RoleCall): ServerResult {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      for (;;) {
        const l = r.tryRead();
        if (l >= 0) {
          rc.check(r.data, r.offset, l);
          let off = w.claim(len);
          if (off < 0 && (off = w.claimWait(len, i32, ABORT)) < 0) throw aborted();
          w.data.set(tpl, off);
          stamp(w.data, off, len, rc.lastSeq, 0, NaN);
          w.publish();
          continue;
        }
        if (Atomics.load(i32, STOP) !== 0) break;
        if (Atomics.load(i32, ABORT) !== 0) throw aborted();
        awaitData(readers, bell);
      }
      return { served: rc.total, errors: rc.errors };
    },
    close() {},
  };
};

export const roles: Record<string, RoleFactory> = {
  'stream-sender': streamSender,
  'stream-receiver': streamReceiver,
  'rr-client': rrClient,
  'rr-server': rrServer,
};
