/*
 * Waiting sends, the coordinator's half (the peer's half and the protocol: src/waiting.ts).
 *
 * One FIFO per receiving uid of peers whose waiting send that uid refused. A uid's
 * ledger counts its give-backs (Ledger.giveBacks: receipts, releases, discharges); the
 * head of a queue is woken (its CTL_WAKE word bumped and notified) once that count has
 * moved since the refusal that queued it. No peer polls: the check runs once per
 * coordinator round, and only over uids that have waiters (whose receipts it accounts
 * first). A coordinator with nothing else to do checks when it wakes, at least once a
 * second: a receiver that only reads (no release) may keep a waiter that long.
 *
 * Invariants:
 *   - per uid at most one waiter holds the turn (`turn`) at a time: woken, not yet back;
 *     the turn passes on when it gets through (a SEND_FLAG_WAIT send that succeeds),
 *     gives up (WAIT_CANCEL) or dies (forget). Refused again, it re-queues at the front
 *     (WAIT_FRONT), so no later waiter overtakes it: FIFO, and none starves;
 *   - a waiter's `seen` is the uid's give-back count at its last refusal, recorded when
 *     the refusal happened (refused()), so a give-back between the refusal and the OP_WAIT
 *     that follows it is never missed;
 *   - a peer that disconnects leaves no entry behind.
 */

import { CTL_WAKE, WAIT_CANCEL, WAIT_FRONT } from '../../shared/layout.js';
import type { PeerState } from './peer-state.js';
import type { Users } from './users.js';

interface Waiter {
  peer: PeerState;
  seen: number;
}

class UidQueue {
  readonly queue: Waiter[] = [];
  turn: PeerState | null = null;
}

export class Waiters {
  readonly #users: Users<PeerState>;
  readonly #byUid = new Map<number, UidQueue>();
  /** Give-back counts at each waiting peer's last refusal, by receiving uid. */
  readonly #refusals = new Map<PeerState, Map<number, number>>();
  /** Queued waiters over all uids (the round's check is skipped at 0). */
  #count = 0;

  /** Accounts the receipts of every peer of a uid (PeerState.syncConsumed): a receipt is a give-back too. */
  readonly #sync: (uid: number) => void;

  constructor(users: Users<PeerState>, sync: (uid: number) => void) {
    this.#users = users;
    this.#sync = sync;
  }

  #giveBacks(uid: number): number {
    return this.#users.peek(uid)?.ledger.giveBacks ?? 0;
  }

  /** A waiting send of `peer` was refused by `uid`. */
  refused(peer: PeerState, uid: number): void {
    let m = this.#refusals.get(peer);
    if (m === undefined) this.#refusals.set(peer, m = new Map());
    m.set(uid, this.#giveBacks(uid));
  }

  /** A waiting send of `peer` went through: if it held a turn, pass it on. */
  passed(peer: PeerState): void {
    if (this.#byUid.size === 0) return;
    for (const q of this.#byUid.values()) if (q.turn === peer) q.turn = null;
  }

  /** OP_WAIT from `peer` for `uid`. */
  wait(peer: PeerState, uid: number, flags: number): void {
    // A uid that never had a peer never refused anything: a forged record, ignored (the
    // map only ever holds real uids).
    if (this.#users.peek(uid) === undefined) return;
    let q = this.#byUid.get(uid);
    if (q === undefined) this.#byUid.set(uid, q = new UidQueue());
    const hadTurn = q.turn === peer;
    // Whatever it waits for now, it no longer holds any turn.
    this.passed(peer);
    if ((flags & WAIT_CANCEL) !== 0) {
      const i = q.queue.findIndex((w) => w.peer === peer);
      if (i >= 0) {
        q.queue.splice(i, 1);
        this.#count--;
      }
      return;
    }
    const seen = this.#refusals.get(peer)?.get(uid) ?? this.#giveBacks(uid);
    // One entry per peer and uid: all of a peer's waiting sends wake on its one CTL_WAKE word.
    const queued = q.queue.find((x) => x.peer === peer);
    if (queued !== undefined) {
      queued.seen = seen;
      return;
    }
    const w: Waiter = { peer, seen };
    if ((flags & WAIT_FRONT) !== 0 && hadTurn) q.queue.unshift(w);
    else q.queue.push(w);
    this.#count++;
  }

  /** Once per round: wake each queue's head whose uid has given something back since its refusal. */
  poll(): void {
    if (this.#count === 0) return;
    for (const [uid, q] of this.#byUid) {
      if (q.turn !== null || q.queue.length === 0) continue;
      const head = q.queue[0];
      // Receipts are accounted lazily; a receiver that reads without releasing gives back too.
      this.#sync(uid);
      if (this.#giveBacks(uid) === head.seen) continue;
      q.queue.shift();
      this.#count--;
      q.turn = head.peer;
      Atomics.add(head.peer.ctl, CTL_WAKE, 1);
      Atomics.notify(head.peer.ctl, CTL_WAKE);
    }
  }

  /** Waiting sends of `peer` queued now. */
  waitingOf(peer: PeerState): number {
    let n = 0;
    if (this.#count > 0) for (const q of this.#byUid.values()) for (const w of q.queue) if (w.peer === peer) n++;
    return n;
  }

  /** `peer` is gone: drop its entries and pass on any turn it held. */
  forget(peer: PeerState): void {
    this.#refusals.delete(peer);
    for (const q of this.#byUid.values()) {
      if (q.turn === peer) q.turn = null;
      for (let i = q.queue.length - 1; i >= 0; i--) {
        if (q.queue[i].peer === peer) {
          q.queue.splice(i, 1);
          this.#count--;
        }
      }
    }
  }
}
