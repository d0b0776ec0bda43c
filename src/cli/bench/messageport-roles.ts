/*
 * The same roles over Node's own postMessage, for `--compare messageport`: one
 * MessageChannel per (sender, receiver) edge, payloads structured-cloned. postMessage has
 * no flow control of its own, so each edge gets a credit window (the receiver acks every
 * quarter window), the stand-in for threadbus's quota; a pubsub subscriber without credit
 * misses the message (counted as refused), like a partial multicast. Senders end every
 * edge with a FIN message, and a receiver is done when every edge has said FIN: ports
 * are FIFO, so nothing is left behind.
 */

import type { MessagePort } from 'node:worker_threads';
import { PeerThread, Schedule, eachDue, makePayload, stamp, stampedMs, waitUntil, type CommonInit } from './peer-thread.js';
import { RECEIVED, REFUSED, SENT } from './plan.js';

export interface MessagePortInit extends CommonInit {
  readonly transport: 'messageport';
  /** One port per edge: to each dest (senders, clients), from each source (receivers, server). */
  readonly ports: MessagePort[];
}

/** Bytes in flight per edge, as messages: at least 8, at most 1024. */
export function creditWindow(size: number): number {
  return Math.max(8, Math.min(1024, Math.floor((1 << 20) / size)));
}

const FIN = 'fin';
/** How long a sender out of credit waits before looking at STOP again. */
const CREDIT_WAIT_MS = 50;

async function sender(t: PeerThread, d: MessagePortInit, t0: number): Promise<void> {
  const plan = t.plan;
  const buf = makePayload(d.size);
  const sched = new Schedule(plan, t0);
  const window = creditWindow(d.size);
  const ports = d.ports;
  const posted = new Float64Array(ports.length);
  const acked = new Float64Array(ports.length);
  let wake: (() => void) | null = null;
  ports.forEach((p, i) => p.on('message', (n: number) => {
    acked[i] = n;
    wake?.();
  }));
  const hasCredit = (i: number) => posted[i]! - acked[i]! < window;
  const creditEvent = () => new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, CREDIT_WAIT_MS);
    wake = () => {
      clearTimeout(timer);
      wake = null;
      resolve();
    };
  });
  let sinceYield = 0;
  await eachDue(t, sched, async (seq, stampMs) => {
    stamp(buf, seq, stampMs);
    if (plan.fanout === 'turn') {
      const i = seq % ports.length;
      if (!hasCredit(i)) {
        await creditEvent();
        return false;
      }
      ports[i]!.postMessage(buf);
      posted[i]!++;
      t.add(SENT, 1);
    } else if (plan.partial) {
      let sent = 0;
      for (let i = 0; i < ports.length; i++) {
        if (!hasCredit(i)) continue;
        ports[i]!.postMessage(buf);
        posted[i]!++;
        sent++;
      }
      t.add(SENT, sent);
      t.add(REFUSED, ports.length - sent);
      if (sent === 0) await creditEvent();
    } else {
      if (!ports.every((_, i) => hasCredit(i))) {
        await creditEvent();
        return false;
      }
      for (let i = 0; i < ports.length; i++) {
        ports[i]!.postMessage(buf);
        posted[i]!++;
      }
      t.add(SENT, ports.length);
    }
    if (++sinceYield === window) {
      sinceYield = 0;
      await waitUntil(0);
    }
    return true;
  });
  for (const p of ports) p.postMessage(FIN);
}

async function client(t: PeerThread, d: MessagePortInit, t0: number): Promise<void> {
  const buf = makePayload(d.size);
  const port = d.ports[0]!;
  let replied: (() => void) | null = null;
  port.on('message', () => replied?.());
  await eachDue(t, new Schedule(t.plan, t0), async (seq, sentAt) => {
    stamp(buf, seq, sentAt);
    await new Promise<void>((resolve) => {
      replied = resolve;
      port.postMessage(buf);
    });
    t.recordSince(sentAt);
    t.add(SENT, 1);
    t.add(RECEIVED, 1);
    return true;
  });
  port.postMessage(FIN);
}

/** Receivers and the server: done once every edge has said FIN. */
function receiver(t: PeerThread, d: MessagePortInit): Promise<void> {
  const serve = t.plan.role === 'server';
  const reply = serve ? makePayload(d.size) : null;
  const ackEvery = Math.max(1, creditWindow(d.size) >> 2);
  let open = d.ports.length;
  return new Promise<void>((resolve) => {
    d.ports.forEach((port) => {
      let count = 0;
      port.on('message', (m: Uint8Array | string) => {
        if (m === FIN) {
          port.close();
          if (--open === 0) resolve();
          return;
        }
        const b = m as Uint8Array;
        count++;
        t.add(RECEIVED, 1);
        if (reply !== null) {
          reply.set(b.subarray(0, 16));
          port.postMessage(reply);
          t.add(SENT, 1);
        } else {
          t.recordSince(stampedMs(b));
          if (count % ackEvery === 0) port.postMessage(count);
        }
      });
    });
    if (open === 0) resolve();
  });
}

export async function runMessagePort(t: PeerThread, d: MessagePortInit): Promise<void> {
  try {
    await t.serve((t0) => {
      switch (t.plan.role) {
        case 'sender':
          return sender(t, d, t0);
        case 'client':
          return client(t, d, t0);
        case 'server':
        case 'receiver':
          return receiver(t, d);
      }
    });
  } finally {
    for (const p of d.ports) p.close();
  }
}
