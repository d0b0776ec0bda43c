/*
 * Waiting sends: send(to, data, { wait: true | ms, signal }) waits on EDQUOT instead of
 * failing, and goes through once the receiving uid has given enough back.
 *
 * The peer side of a protocol whose other half is src/coordinator/waiters.ts:
 *   1. the send goes out with SEND_FLAG_WAIT, so that an EDQUOT refusal is remembered by
 *      the coordinator together with how many give-backs the refusing uid had had;
 *   2. on EDQUOT the peer writes OP_WAIT(uid) and sleeps on its CTL_WAKE word: the
 *      coordinator queues it, FIFO per receiving uid, and bumps CTL_WAKE of the head of
 *      the queue once that uid has given something back since the refusal (no polling);
 *   3. woken, the send is tried again; refused again, it re-queues at the front
 *      (WAIT_FRONT), keeping its turn; through, the coordinator passes the turn on;
 *   4. giving up (timeout, abort, another error) writes OP_WAIT with WAIT_CANCEL, so the
 *      turn passes on at once. A dead peer's turn is passed on by the coordinator.
 * An all-or-nothing multicast waits on whichever uid refused it, then tries again whole.
 * The wait itself is bounded by the deadline, re-checks the peer every second, and ends
 * with ESHUTDOWN when the peer or bus is closed.
 */

import { BusError } from './errors.js';
import type { HandleId } from './message.js';
import type { PeerCore } from './router.js';
import type { WaitOptions } from './peer/types.js';
import { CTL_WAKE, SEND_FLAG_WAIT, WAIT_CANCEL, WAIT_FRONT } from '../shared/layout.js';
import { sleepWhileEqualAsync } from '../shared/wait.js';
import { abortError, checkMs, checkSignal, untilAborted } from './abort.js';

export type { WaitOptions } from './peer/types.js';

export async function sendWaiting(
  core: PeerCore, to: HandleId | HandleId[], data: unknown, opts: WaitOptions & { handles?: HandleId[] },
): Promise<void> {
  const ms = opts.wait === true ? Infinity : checkMs(opts.wait, 'send', 'opts.wait');
  const signal = checkSignal(opts.signal, 'send');
  const deadline = performance.now() + ms;
  const ctl = core.wakeWord();
  let queuedAt = -1;   // the uid whose queue holds our turn, if any
  let refusal: BusError | null = null;
  try {
    for (;;) {
      if (signal?.aborted) throw abortError(signal, 'send');
      const seen = Atomics.load(ctl, CTL_WAKE);
      try {
        await core.send(to, data, opts.handles, SEND_FLAG_WAIT);
        queuedAt = -1; // the coordinator passed our turn on
        return;
      } catch (e) {
        if (!(e instanceof BusError) || e.code !== 'EDQUOT') throw e;
        refusal = e;
      }
      if (performance.now() >= deadline) break;
      const uid = refusal.uid ?? 0;
      core.writeWait(uid, queuedAt === uid ? WAIT_FRONT : 0);
      queuedAt = uid;
      while (Atomics.load(ctl, CTL_WAKE) === seen) {
        const left = deadline - performance.now();
        if (left <= 0) break;
        if (!core.isOpen()) throw new BusError('ESHUTDOWN', 'send: the peer is closed or the bus is shut down');
        const r = sleepWhileEqualAsync(ctl, CTL_WAKE, seen, -1, left);
        if (typeof r !== 'string') await (signal === undefined ? r : untilAborted(r, signal));
        if (signal?.aborted) throw abortError(signal, 'send');
      }
    }
    throw new BusError('ETIMEDOUT', `send: still refused after waiting ${ms} ms (${refusal!.message})`,
      { resource: refusal!.resource, uid: refusal!.uid });
  } finally {
    if (queuedAt >= 0) {
      try {
        core.writeWait(queuedAt, WAIT_CANCEL);
      } catch {
        // Shut down: the coordinator forgot the peer's turns already.
      }
    }
  }
}
