// Worker roles for the "messageport" and "messageport-transfer" systems: plain
// MessagePort.postMessage of a Uint8Array, either structured-cloned or with
// its ArrayBuffer transferred (then the sender must allocate and fill a fresh
// buffer for every message, which is what transfer really costs). Receivers
// use port.on('message'), Node's cheapest delivery path (no MessageEvent).

import type { MessagePort } from 'node:worker_threads';
import {
  LatencyRecorder,
  REQREP_LATENCY_CAPACITY,
  Receipt,
  makeTemplate,
  stamp,
  type ClientResult,
  type ServerResult, type ControlInit, type Role, type RoleCall, type RoleFactory } from '../protocol.js';
import { ackingReceiver, windowedSender, type StreamReceiverCommon, type StreamSenderCommon } from './evented.js';

export interface MpStreamSenderData extends StreamSenderCommon {
  /** One port per destination; acks come back on the same port. */
  readonly ports: MessagePort[];
  readonly windowMsgs: number;
  readonly transfer: boolean;
}

export interface MpStreamReceiverData extends StreamReceiverCommon {
  /** One port per upstream sender. */
  readonly ports: MessagePort[];
  readonly ackEvery: number;
}

export interface MpReqrepData {
  readonly ctl: ControlInit;
  readonly port: MessagePort;
  readonly payloadBytes: number;
  readonly transfer: boolean;
}

/** Returns a function posting `tpl` stamped with (seq, src, sendMs) to `port`. */
function poster(port: MessagePort, len: number, src: number, transfer: boolean) {
  const tpl = makeTemplate(len);
  if (transfer) {
    return (seq: number, sendMs: number): void => {
      const b = new Uint8Array(len);
      b.set(tpl);
      stamp(b, 0, len, seq, src, sendMs);
      port.postMessage(b, [b.buffer]);
    };
  }
  return (seq: number, sendMs: number): void => {
    stamp(tpl, 0, len, seq, src, sendMs);
    port.postMessage(tpl);
  };
}

const streamSender: RoleFactory = (d: MpStreamSenderData) => {
  if (d.transfer && d.ports.length > 1) throw new Error('one transferred buffer cannot go to several ports');
  const posts = d.ports.map((p) => poster(p, d.payloadBytes, d.src, d.transfer));
  const send =
    posts.length === 1
      ? posts[0]!
      : (seq: number, sendMs: number) => {
          for (let i = 0; i < posts.length; i++) posts[i]!(seq, sendMs);
        };
  return windowedSender(d, d.ports, send, () => {});
};

const streamReceiver: RoleFactory = (d: MpStreamReceiverData) => {
  const r = ackingReceiver(d, d.ports, () => {});
  d.ports.forEach((p, i) => p.on('message', (m: Uint8Array) => r.onMessage(i, m)));
  return r.role;
};

const rrClient: RoleFactory = (d: MpReqrepData): Role => {
  const len = d.payloadBytes;
  const send = poster(d.port, len, 0, d.transfer);
  const rc = new Receipt(1, len, null, 0, false, null);
  const rec = new LatencyRecorder(REQREP_LATENCY_CAPACITY);
  let seq = 0;
  let measureFrom = 0;
  let end = 0;
  let tPrev = 0;
  let firstT0 = 0;
  let trips = 0;
  let finish: ((r: ClientResult) => void) | null = null;

  d.port.on('message', (m: Uint8Array) => {
    // One clock read per trip: this reply's arrival is the next request's start.
    const t = performance.now();
    rc.check(m, 0, m.length);
    if (finish === null) return;
    if (tPrev >= measureFrom) {
      if (trips === 0) firstT0 = tPrev;
      rec.record((t - tPrev) * 1e6);
      trips++;
      if (t >= end) {
        const f = finish;
        finish = null;
        const s = rec.take();
        f({ trips, elapsedMs: t - firstT0, errors: rc.errors, samplesNs: s.samples, dropped: s.dropped });
        return;
      }
    }
    tPrev = t;
    send(seq++ >>> 0, NaN);
  });
  return {
    call(cmd: RoleCall) {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      return new Promise<ClientResult>((resolve) => {
        finish = resolve;
        trips = 0;
        rec.take();
        tPrev = performance.now();
        measureFrom = tPrev + (cmd.rampMs as number);
        end = measureFrom + (cmd.windowMs as number);
        send(seq++ >>> 0, NaN);
      });
    },
    close() {
      d.port.close();
    },
  };
};

const rrServer: RoleFactory = (d: MpReqrepData): Role => {
  const send = poster(d.port, d.payloadBytes, 0, d.transfer);
  const rc = new Receipt(1, d.payloadBytes, null, 0, false, null);
  d.port.on('message', (m: Uint8Array) => {
    rc.check(m, 0, m.length);
    send(rc.lastSeq, NaN);
  });
  return {
    // Always serving; run only reports the verification state.
    call: (): ServerResult => ({ served: rc.total, errors: rc.errors }),
    close() {
      d.port.close();
    },
  };
};

export const roles: Record<string, RoleFactory> = {
  'stream-sender': streamSender,
  'stream-receiver': streamReceiver,
  'rr-client': rrClient,
  'rr-server': rrServer,
};
