// Role building blocks for event-driven transports (MessagePort, BroadcastChannel,
// and anything callback-based): a sender with a credit window and a receiver
// that acks. Without a window postMessage queues without bound (64 KiB x
// millions of messages), and any real application would need one. Window
// sizes come from flowControl() in perf/drivers.ts.

import type { MessagePort } from 'node:worker_threads';
import {
  Control,
  LatencyRecorder,
  Receipt,
  STOP,
  STREAM_LATENCY_CAPACITY,
  nowMs,
  type ControlInit,
  type ReceiverResult,
  type Role,
  type RoleCall,
  type SenderResult,
} from '../protocol.js';

export interface StreamSenderCommon {
  readonly ctl: ControlInit;
  /** Source id stamped into every message. */
  readonly src: number;
  readonly payloadBytes: number;
  /** Stamp 1 in latencyEvery messages with the send time (0 = never). Power of two. */
  readonly latencyEvery: number;
}

export interface StreamReceiverCommon {
  readonly ctl: ControlInit;
  readonly index: number;
  /** Number of senders in the whole topology (source ids are < sources). */
  readonly sources: number;
  readonly payloadBytes: number;
  readonly perSource: boolean;
  readonly latencyEvery: number;
}

/**
 * `send(seq, sendMs)` must deliver message `seq` to every destination;
 * ackPorts[i] carries acks (message counts) from destination i.
 */
export function windowedSender(
  d: StreamSenderCommon & { readonly windowMsgs: number },
  ackPorts: readonly MessagePort[],
  send: (seq: number, sendMs: number) => void,
  close: () => void,
): Role {
  const i32 = new Control(d.ctl).i32;
  const acked = new Float64Array(ackPorts.length);
  const mask = d.latencyEvery - 1;
  const stampLatency = d.latencyEvery > 0;
  let seq = 0;
  let sentRun = 0;
  let finish: ((r: SenderResult) => void) | null = null;

  const pump = (): void => {
    if (finish === null) return;
    let minAcked = acked[0]!;
    for (let i = 1; i < acked.length; i++) if (acked[i]! < minAcked) minAcked = acked[i]!;
    let room = d.windowMsgs - (seq - minAcked);
    while (room > 0) {
      if (Atomics.load(i32, STOP) !== 0) {
        const f = finish;
        finish = null;
        f({ sent: sentRun });
        return;
      }
      send(seq >>> 0, stampLatency && (seq & mask) === 0 ? nowMs() : NaN);
      seq++;
      sentRun++;
      room--;
    }
  };
  ackPorts.forEach((p, i) =>
    p.on('message', (k: number) => {
      acked[i] = acked[i]! + k;
      pump();
    }),
  );
  return {
    call(cmd: RoleCall) {
      if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
      sentRun = 0;
      return new Promise<SenderResult>((resolve) => {
        finish = resolve;
        pump();
      });
    },
    close() {
      for (const p of ackPorts) p.close();
      close();
    },
  };
}

export interface AckingReceiver {
  readonly role: Role;
  /** Feed every message here; `from` indexes ackPorts. */
  onMessage(from: number, m: Uint8Array): void;
}

export function ackingReceiver(
  d: StreamReceiverCommon & { readonly ackEvery: number },
  ackPorts: readonly MessagePort[],
  close: () => void,
): AckingReceiver {
  const ctl = new Control(d.ctl);
  const lat = d.latencyEvery > 0 ? new LatencyRecorder(STREAM_LATENCY_CAPACITY) : null;
  const rc = new Receipt(d.sources, d.payloadBytes, ctl, d.index, d.perSource, lat);
  const expectIdx = ctl.expectBase + d.index;
  const unacked = new Int32Array(ackPorts.length);
  const ackEvery = d.ackEvery;
  let done: ((r: ReceiverResult) => void) | null = null;
  let draining = false;

  const maybeFinish = (): void => {
    if (done === null || rc.total !== Atomics.load(ctl.u32, expectIdx)) return;
    // Hand back all credit so the next run starts with a full window.
    for (let i = 0; i < ackPorts.length; i++) {
      if (unacked[i]! > 0) ackPorts[i]!.postMessage(unacked[i]);
      unacked[i] = 0;
    }
    draining = false;
    const f = done;
    done = null;
    const l = lat?.take();
    f({ total: rc.total, errors: rc.errors, latencyNs: l?.samples ?? null, latencyDropped: l?.dropped ?? 0 });
  };

  return {
    onMessage(from: number, m: Uint8Array): void {
      rc.check(m, 0, m.length);
      if (++unacked[from]! >= ackEvery) {
        ackPorts[from]!.postMessage(unacked[from]);
        unacked[from] = 0;
      }
      if (draining) maybeFinish();
    },
    role: {
      call(cmd: RoleCall) {
        if (cmd.op !== 'run') throw new Error(`unknown op ${cmd.op}`);
        lat?.take();
        draining = false;
        return new Promise<ReceiverResult>((resolve) => {
          done = resolve;
        });
      },
      notify(msg: RoleCall) {
        if (msg.op === 'drain') {
          draining = true;
          maybeFinish();
        }
      },
      close() {
        for (const p of ackPorts) p.close();
        close();
      },
    },
  };
}
