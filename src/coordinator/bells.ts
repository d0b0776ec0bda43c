/*
 * Bells: who the coordinator polls, and how it sleeps (coordinator thread only).
 *
 * A peer's OUT "consumer sleeping" flag means "not polled: ring your bell". The peer, on
 * publishing while it is up, sets its bit in the bell map and bumps and notifies the
 * doorbell counter (src/peer/link.ts kick). Sequentially consistent atomics make the
 * hand-over race-free: the coordinator raises the flag and then looks at the ring, the
 * peer publishes and then looks at the flag, so one of them sees the other. Bells are
 * shared memory, so nothing here trusts them: a wrong bit costs an empty poll, a
 * cleared one is caught by sweep() within SWEEP_PERIOD_MS.
 *
 * Owns: the doorbell, `active` (the peers polled each round: those whose bell rang,
 * until their OUT ring has been empty for IDLE_POLLS rounds, plus any with held-back
 * descriptors, a stalled verdict ring, or no bell), the bell table and its free list,
 * and sleepSeen. Invariant: peer.polled is true exactly while the peer is in `active`.
 */

import { CTL_BELL, DOORBELL_BYTES, BELL_COUNTER, BELL_MAP, MAX_BELLS, NO_BELL, RING_CONSUMER_SLEEPING } from '../../shared/layout.js';
import { mappedBuffer } from './pool.js';
import type { PeerState } from './peer-state.js';
import { clearList, type CoordinatorCore } from './core.js';

/** Empty polls of a peer's OUT ring before it is handed back to its bell. */
export const IDLE_POLLS = 4;
/** sweep() looks at every unpolled ring at least this often (or once per cold sleep). */
export const SWEEP_PERIOD_MS = 20;
/** Fewest peers one sweep() looks at. */
const SWEEP_MIN = 32;

export class Bells {
  // Mapped like the peers' buffers, so that code touching both sees one kind of view (pool.ts, mappedBuffer).
  readonly doorbell = mappedBuffer(DOORBELL_BYTES);
  readonly doorbellI32 = new Int32Array(this.doorbell);
  /** The peers polled each round (see the top of this file). */
  readonly active: PeerState[] = [];
  /** Peers by bell index; freed bells are reused (a stale bit costs one empty poll). */
  readonly bells: Array<PeerState | undefined> = [];
  readonly freeBells: number[] = [];
  /** The doorbell counter seen before the last beginSleep() check; the wait is on it. */
  sleepSeen = 0;
  /** Where the next sweep() starts in core.peers, and when the last one ran. */
  #sweepAt = 0;
  #sweptAt = performance.now();
  /** The last number a consumer-sleeping flag was raised with (#raise). */
  #flagNumber = 1;
  /** Sleeping receivers woken by deliverWakes() so far (the coordinator loop yields its core after one). */
  woken = 0;

  constructor(readonly core: CoordinatorCore) {}

  assignBell(peer: PeerState): void {
    const bell = this.freeBells.length > 0 ? this.freeBells.pop()! : this.bells.length < MAX_BELLS ? this.bells.length : NO_BELL;
    peer.bell = bell;
    Atomics.store(peer.ctl, CTL_BELL, bell);
    if (bell === NO_BELL) {
      // Polled every round; its flag stays up so that it still wakes a sleeping coordinator.
      peer.polled = true;
      this.active.push(peer);
      peer.setOutSleeping(1);
    } else {
      // Not polled, and its flag left down: the peer rings its first publish whatever the
      // flag says (src/peer/outbox.ts), so that nothing writes a page of its buffer while
      // it idles.
      this.bells[bell] = peer;
    }
  }

  /**
   * Raise the peer's OUT consumer-sleeping flag with a number it has not seen: the peer
   * rings once per number (src/peer/outbox.ts commit), not once per record.
   */
  #raise(peer: PeerState): void {
    this.#flagNumber = (this.#flagNumber + 1) | 0 || 1;
    Atomics.store(peer.out.ctl, RING_CONSUMER_SLEEPING, this.#flagNumber);
  }

  /** Take every rung bell and poll those peers from now on. */
  collectBells(): void {
    const db = this.doorbellI32;
    const words = (this.bells.length + 31) >> 5;
    for (let w = 0; w < words; w++) {
      if (Atomics.load(db, BELL_MAP + w) === 0) continue;
      let bits = Atomics.exchange(db, BELL_MAP + w, 0);
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits);
        bits &= ~(1 << b);
        const peer = this.bells[(w << 5) + b];
        if (peer === undefined || !peer.open) continue;
        this.poll(peer);
      }
    }
  }

  poll(peer: PeerState): void {
    peer.idlePolls = 0;
    if (peer.polled) return;
    peer.polled = true;
    peer.out.setConsumerSleeping(false);
    this.active.push(peer);
  }

  /**
   * Stop polling the idle peer at active[i] (its bell will ring). False when it must stay:
   * it has no bell, or it is stalled or holds back descriptors, or it published meanwhile.
   */
  release(peer: PeerState, i: number): boolean {
    if (this.active[i] !== peer || peer.bell === NO_BELL || peer.stalled || peer.overflow.length > 0) return false;
    this.#raise(peer);
    if (peer.out.hasData()) {
      peer.out.setConsumerSleeping(false);
      peer.idlePolls = 0;
      return false;
    }
    peer.polled = false;
    const last = this.active.pop()!;
    if (last !== peer) this.active[i] = last;
    return true;
  }

  dropBell(peer: PeerState): void {
    if (peer.polled) {
      const at = this.active.indexOf(peer);
      if (at >= 0) this.active.splice(at, 1);
      peer.polled = false;
    }
    if (peer.bell !== NO_BELL) {
      this.bells[peer.bell] = undefined;
      this.freeBells.push(peer.bell);
    }
  }

  /**
   * Wake the sleeping receivers publish() did not wake at once. A round is the batch:
   * waiting longer (say, for the coordinator to go idle) would starve receivers of a bus
   * that is never idle.
   */
  deliverWakes(): void {
    const w = this.core.wakes;
    for (let i = 0; i < w.length; i++) {
      const p = w[i];
      p.inWakeList = false;
      if (p.wakePending && Atomics.load(p.desc.ctl, RING_CONSUMER_SLEEPING) !== 0) this.woken++;
      p.wakeIfPending();
    }
    clearList(w);
  }

  /**
   * Before the coordinator sleeps: hand every idle polled peer back to its bell and read
   * the doorbell counter (sleepSeen: the wait is on it, so a bell rung after this wakes
   * it). False when there is work after all.
   */
  beginSleep(): boolean {
    const active = this.active;
    for (let i = 0; i < active.length; i++) {
      const p = active[i];
      if (!p.open) continue;
      if (this.release(p, i)) i--;
      // A peer without a bell keeps its flag up; a new number makes it ring for this sleep.
      else if (p.bell === NO_BELL) this.#raise(p);
    }
    this.sleepSeen = Atomics.load(this.doorbellI32, BELL_COUNTER);
    return !this.hasWork();
  }

  /**
   * Poll the unpolled peers whose rings hold records, a share of all peers at a time.
   * Bells are shared memory: a hostile peer can clear another peer's bit, and the sweep
   * bounds what that costs the victim. Called at every turn to the event loop (at most
   * every LOOP_SLICE_MS of work or BLOCK_SLICE_MS of sleep, or once per cold sleep), it
   * looks at as many peers as the time since the last call is a share of SWEEP_PERIOD_MS
   * (at least SWEEP_MIN), from where the last call stopped: every ring is looked at
   * within SWEEP_PERIOD_MS (or one cold sleep), and the cost is O(peers) per
   * SWEEP_PERIOD_MS, not per turn. (A full pass per turn made creating n peers O(n^2):
   * each control message is a turn.) A peer that has not yet published costs a load of
   * its control block, not of its ring (PeerState.outHasData: a page fault per idle peer).
   */
  sweep(): void {
    const peers = this.core.peers;
    const n = peers.length;
    const now = performance.now();
    const share = Math.ceil((n * (now - this.#sweptAt)) / SWEEP_PERIOD_MS);
    this.#sweptAt = now;
    const budget = Math.min(n, Math.max(SWEEP_MIN, share));
    let i = this.#sweepAt;
    for (let k = 0; k < budget; k++) {
      // Disconnects shift the array: a peer passed over now is looked at in the next pass.
      if (i >= peers.length) i = 0;
      const p = peers[i++];
      if (p.open && !p.polled && p.outHasData()) this.poll(p);
    }
    this.#sweepAt = i;
  }

  /**
   * True when some request can be processed now: a bell rang, or a polled peer has
   * records. A peer stalled on its own unread verdicts, or with descriptors held back, is
   * not work: it is polled at POLL_MS (needsPolling) so that a peer that stops reading
   * cannot keep this thread spinning.
   */
  hasWork(): boolean {
    for (const peer of this.active) {
      if (peer.open && !peer.stalled && peer.out.hasData()) return true;
    }
    const db = this.doorbellI32;
    const words = (this.bells.length + 31) >> 5;
    for (let w = 0; w < words; w++) if (Atomics.load(db, BELL_MAP + w) !== 0) return true;
    return false;
  }

  needsPolling(): boolean {
    for (const peer of this.active) if (peer.open && (peer.stalled || peer.overflow.length > 0)) return true;
    return false;
  }
}
