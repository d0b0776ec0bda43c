/*
 * The bench's peer roles over threadbus, one Peer per thread. Senders post() in windows
 * and flush(): a refused window (EDQUOT: the receiving uid's quota said no to this
 * sending uid) is counted, paused on and posted again, so nothing counted as sent is
 * lost. Publishers use send(..., { partial: true }): a subscriber without room misses
 * that message and it counts as refused. Clients pass a handle to their own node with
 * every request, and the server replies to it and releases it. Receivers drain until the
 * main thread raises DRAIN, which it does only after every sender's last flush(), so by
 * then every accepted message is already queued to them.
 */

import { Peer, BusError, type PeerTicket } from '../../index.js';
import { setImmediate as yieldNow } from 'node:timers/promises';
import {
  PeerThread, Schedule, eachDue, makePayload, sleep, stamp, stampedMs, waitUntil, type CommonInit,
} from './peer-thread.js';
import { RECEIVED, REFUSED, SENT } from './plan.js';

export interface ThreadbusInit extends CommonInit {
  readonly transport: 'threadbus';
  readonly ticket: PeerTicket;
  /** This peer's handles for plan.dests, in the same order. */
  readonly handles: number[];
  /** A client's handle to its own node, passed along with each request. */
  readonly replyHandle: number;
}

/** Posts between two flush() calls when sending flat out, and when paced. */
const WINDOW = 4096;
const PACED_WINDOW = 256;
/** A paced sender learns its verdicts at least this often. */
const SETTLE_EVERY_MS = 20;
/** Publishes in flight at once. */
const PUBLISH_BATCH = 64;
/** Pause after a refusal before trying again: the receiver needs time to dequeue. */
const BACKOFF_MS = 1;
/** Longest blocking receive, so that the thread still turns its event loop. */
const SLICE_MS = 10;
/** How long a stopping client waits for its last reply. */
const LAST_REPLY_MS = 1000;

function refusedOrThrow(e: BusError): void {
  if (e.code !== 'EDQUOT') throw e;
}

async function sender(t: PeerThread, peer: Peer, d: ThreadbusInit, t0: number): Promise<void> {
  const plan = t.plan;
  const buf = makePayload(d.size);
  const sched = new Schedule(plan, t0);
  const window = sched.paced ? PACED_WINDOW : WINDOW;
  const each = plan.fanout === 'each';
  const n = d.handles.length;
  let seq = 0;
  let unsettled = 0;
  let settledAt = performance.now();
  // Learn the verdicts of the posts so far; refused ones are always the last ones, so
  // rewind and send them again.
  const settle = async (): Promise<void> => {
    const { rejected } = await peer.flush();
    for (const r of rejected) refusedOrThrow(r.error);
    seq -= rejected.length;
    t.add(SENT, (unsettled - rejected.length) * (each ? n : 1));
    t.add(REFUSED, rejected.length);
    unsettled = 0;
    settledAt = performance.now();
    if (rejected.length > 0) await sleep(BACKOFF_MS);
  };
  // The last settle may rewind: go on until everything up to the quota was accepted.
  while (!t.stopped && (seq < sched.quota || unsettled > 0)) {
    const limit = sched.limit();
    if (seq >= limit) {
      if (unsettled > 0 && (seq >= sched.quota || performance.now() - settledAt >= SETTLE_EVERY_MS)) await settle();
      else await waitUntil(sched.timeOf(seq));
      continue;
    }
    let posted = 0;
    while (posted < window && seq < limit) {
      stamp(buf, seq, sched.stampOf(seq));
      peer.post(each ? d.handles : d.handles[seq % n]!, buf);
      seq++;
      posted++;
      if ((posted & 255) === 0 && t.stopped) break;
    }
    unsettled += posted;
    // Flat out, every window; paced, a verdict round trip per tiny batch would cost more
    // than the batch, so every SETTLE_EVERY_MS or full window.
    if (!sched.paced || unsettled >= window || performance.now() - settledAt >= SETTLE_EVERY_MS) await settle();
    if (t.dueToYield()) await yieldNow();
  }
  if (unsettled > 0) await settle();
}

async function publisher(t: PeerThread, peer: Peer, d: ThreadbusInit, t0: number): Promise<void> {
  const plan = t.plan;
  const buf = makePayload(d.size);
  const sched = new Schedule(plan, t0);
  const opts = { partial: true } as const;
  let seq = 0;
  while (!t.stopped && seq < sched.quota) {
    const limit = Math.min(sched.limit(), seq + PUBLISH_BATCH);
    if (seq >= limit) {
      await waitUntil(sched.timeOf(seq));
      continue;
    }
    const batch = [];
    for (; seq < limit; seq++) {
      stamp(buf, seq, sched.stampOf(seq));
      batch.push(peer.send(d.handles, buf, opts));
    }
    let delivered = 0;
    let refused = 0;
    for (const report of await Promise.all(batch)) {
      delivered += report.delivered.length;
      for (const r of report.refused) refusedOrThrow(r.error);
      refused += report.refused.length;
    }
    t.add(SENT, delivered);
    t.add(REFUSED, refused);
    if (refused > 0) await sleep(BACKOFF_MS);
  }
}

async function client(t: PeerThread, peer: Peer, d: ThreadbusInit, t0: number): Promise<void> {
  const buf = makePayload(d.size);
  const to = d.handles[0]!;
  const opts = { handles: [d.replyHandle] };
  await eachDue(t, new Schedule(t.plan, t0), async (seq, sentAt) => {
    stamp(buf, seq, sentAt);
    peer.post(to, buf, opts);
    let reply = peer.recvSync(SLICE_MS);
    let giveUpAt = Infinity;
    while (reply === undefined) {
      const { rejected } = await peer.flush();
      if (rejected.length > 0) {
        // The request was refused (EDQUOT): count it, pause, and ask again.
        for (const r of rejected) refusedOrThrow(r.error);
        t.add(REFUSED, 1);
        await sleep(BACKOFF_MS);
        return false;
      }
      if (t.stopped) {
        giveUpAt = Math.min(giveUpAt, performance.now() + LAST_REPLY_MS);
        if (performance.now() > giveUpAt) return false;
      }
      reply = peer.recvSync(SLICE_MS);
    }
    t.recordSince(sentAt);
    reply.release();
    t.add(SENT, 1);
    t.add(RECEIVED, 1);
    if (t.dueToYield()) {
      const { rejected } = await peer.flush();
      for (const r of rejected) refusedOrThrow(r.error);
      await yieldNow();
    }
    return true;
  });
}

async function server(t: PeerThread, peer: Peer, d: ThreadbusInit): Promise<void> {
  const buf = makePayload(d.size);
  for (;;) {
    let served = 0;
    const end = performance.now() + SLICE_MS;
    for (let m = peer.tryRecv() ?? peer.recvSync(SLICE_MS); m !== undefined; ) {
      if (m.type === 'data' && m.handles.length === 1) {
        const h = m.handles[0]!;
        buf.set(m.data.subarray(0, 16));
        peer.post(h, buf);
        peer.releaseHandle(h);
        served++;
      }
      m.release();
      // One clock read: checked and then read again, the time left could be negative by then.
      const left = end - performance.now();
      if (left <= 0) break;
      m = peer.tryRecv() ?? peer.recvSync(left);
    }
    t.add(RECEIVED, served);
    const { rejected } = await peer.flush();
    for (const r of rejected) {
      // A client that closed after its last request is gone, not a failure.
      if (r.error.code !== 'ESHUTDOWN') refusedOrThrow(r.error);
    }
    t.add(SENT, served - rejected.length);
    t.add(REFUSED, rejected.filter((r) => r.error.code === 'EDQUOT').length);
    if (served === 0 && t.draining) return;
    await yieldNow();
  }
}

async function receiver(t: PeerThread, peer: Peer): Promise<void> {
  for (;;) {
    let got = 0;
    const end = performance.now() + SLICE_MS;
    for (let m = peer.tryRecv() ?? peer.recvSync(SLICE_MS); m !== undefined; ) {
      if (m.type === 'data') {
        t.recordSince(stampedMs(m.data));
        got++;
      }
      m.release();
      if ((got & 1023) === 0 && performance.now() > end) break;
      m = peer.tryRecv();
      if (m === undefined) {
        const left = end - performance.now();
        if (left > 0) m = peer.recvSync(left);
      }
    }
    t.add(RECEIVED, got);
    if (got === 0 && t.draining) return;
    await yieldNow();
  }
}

export async function runThreadbus(t: PeerThread, d: ThreadbusInit): Promise<void> {
  const peer = Peer.open(d.ticket);
  try {
    await t.serve(async (t0) => {
      switch (t.plan.role) {
        case 'sender':
          return t.plan.partial ? publisher(t, peer, d, t0) : sender(t, peer, d, t0);
        case 'client':
          return client(t, peer, d, t0);
        case 'server':
          return server(t, peer, d);
        case 'receiver':
          return receiver(t, peer);
      }
    });
  } finally {
    await peer.close().catch(() => undefined);
  }
}
