/*
 * The death watch, peer side: one MessageChannel per (thread, bus), not one per peer.
 *
 * The first Peer.open() of a bus in a thread creates a channel, keeps one end here and
 * sends the other to the coordinator thread with postMessageToThread (the ticket names
 * that thread: busThread). Every peer opened in this thread records the thread in its
 * CTL_OPENED word (threadId + 1). When this thread ends for any reason (return,
 * terminate(), an uncaught throw, process.exit()), the coordinator's end closes, and it
 * disconnects every open peer whose CTL_OPENED names this thread
 * (src/coordinator/disconnect.ts, Disconnects.threadDied). The other way round, when
 * the coordinator thread ends, this end closes, and every peer of that bus opened here
 * learns that its coordinator is gone.
 *
 * The coordinator also posts the pool segments of this thread's peers on it
 * (src/coordinator/segment-mail.ts), each tagged with its peer's id. Nobody listens for
 * 'message' here (that would take them away asynchronously): a peer that meets a pool
 * address it has not mapped takes letters off the port with receiveMessageOnPort
 * (takeSegment), keeping those of this thread's other open peers for them, and dropping
 * those of peers not open here.
 *
 * Invariants: the watch is sent before the first peer that relies on it claims its
 * ticket, so a thread that dies after claiming one always has its watch on its way (a
 * message posted is delivered even if its sender dies); the coordinator learns the
 * sender's threadId from Node (the 'workerMessage' source), never from the message, so
 * a thread cannot have another thread's peers cut off. One watch is kept per bus for the
 * thread's lifetime (a thread rarely opens peers of many buses); it is dropped when the
 * coordinator's end closes.
 */

import { MessageChannel, postMessageToThread, receiveMessageOnPort, threadId, type MessagePort } from 'node:worker_threads';
import { WATCH_KIND } from '../control.js';

/** What a thread's watch tells the peers opened under it. */
export interface WatchedLink {
  readonly peerId: number;
  coordinatorGoneNow(): void;
}

/** A pool segment for one of this thread's peers (src/coordinator/segment-mail.ts, SegmentLetter). */
export interface SegmentLetter {
  peer: number;
  segment: number;
  sab: SharedArrayBuffer;
}

/**
 * The peers are held weakly: a peer that the coordinator cut off and that its user then
 * dropped without close() must not stay reachable (with its buffers) for as long as the
 * thread lives. References whose peer is gone are pruned as new ones are added
 * (amortised: a pass when the set has doubled).
 */
export class ThreadWatch {
  /** True once the coordinator's end has closed (its thread is gone, or the bus closed). */
  gone = false;
  #links = new Set<WeakRef<WatchedLink>>();
  #pruneAt = 64;
  /** Letters taken off the port for another open peer of this thread, by peer id. */
  readonly #kept = new Map<number, SegmentLetter[]>();

  constructor(readonly port: MessagePort) {}

  /** The next segment posted for peer `peerId`, or undefined if none has arrived yet. */
  takeSegment(peerId: number): SegmentLetter | undefined {
    const kept = this.#kept.get(peerId);
    if (kept !== undefined) {
      const l = kept.shift()!;
      if (kept.length === 0) this.#kept.delete(peerId);
      return l;
    }
    for (;;) {
      const m = receiveMessageOnPort(this.port)?.message as SegmentLetter | undefined;
      if (m === undefined) return undefined;
      if (typeof m !== 'object' || m === null || typeof m.peer !== 'number') continue;
      if (m.peer === peerId) return m;
      if (!this.#isOpenHere(m.peer)) continue; // a peer closed here, or one that named this thread falsely
      const list = this.#kept.get(m.peer);
      if (list === undefined) this.#kept.set(m.peer, [m]);
      else list.push(m);
    }
  }

  #isOpenHere(peerId: number): boolean {
    for (const r of this.#links) if (r.deref()?.peerId === peerId) return true;
    return false;
  }

  /** Tell `link` when the coordinator is gone; returns what forget() takes. */
  add(link: WatchedLink): WeakRef<WatchedLink> {
    const ref = new WeakRef(link);
    this.#links.add(ref);
    if (this.#links.size >= this.#pruneAt) {
      for (const r of this.#links) if (r.deref() === undefined) this.#links.delete(r);
      for (const id of this.#kept.keys()) if (!this.#isOpenHere(id)) this.#kept.delete(id);
      this.#pruneAt = Math.max(64, 2 * this.#links.size);
    }
    return ref;
  }

  /** The peer of `ref` closed: nothing more for it, and nothing kept for it. */
  forget(ref: WeakRef<WatchedLink>, peerId: number): void {
    this.#links.delete(ref);
    this.#kept.delete(peerId);
  }

  coordinatorGone(): void {
    this.gone = true;
    for (const r of this.#links) r.deref()?.coordinatorGoneNow();
    this.#links.clear();
  }
}

const watches = new Map<number, ThreadWatch>();

/**
 * A coordinator that runs in this very thread, driven by hand (perf/in-thread.ts: a
 * measurement and test rig, not a way to run a bus), takes the watch here: a thread
 * cannot postMessageToThread itself. Setting one forgets this thread's watch for the
 * previous one (every such coordinator has this thread's id). Not exported by the package.
 */
let localCoordinator: ((port: MessagePort) => void) | null = null;
export function setLocalCoordinator(take: ((port: MessagePort) => void) | null): void {
  localCoordinator = take;
  // Each such coordinator is another bus with the same thread id: it needs a watch of its own.
  watches.delete(threadId);
}

/** The value a peer opened in this thread stores in CTL_OPENED. */
export const OPENED_HERE = threadId + 1;

/** This thread's watch for the bus whose coordinator runs in `busThread`, sent on first use. */
export function watchThread(busThread: number): ThreadWatch {
  let w = watches.get(busThread);
  if (w !== undefined) return w;
  const { port1, port2 } = new MessageChannel();
  const watch = w = new ThreadWatch(port1);
  port1.on('close', () => {
    if (watches.get(busThread) === watch) watches.delete(busThread);
    watch.coordinatorGone();
  });
  // It only watches; it must not keep this thread alive.
  port1.unref();
  if (busThread === threadId && localCoordinator !== null) {
    localCoordinator(port2);
  } else {
    // Posted synchronously (the promise only reports delivery). If it fails, the coordinator
    // is gone, and its peers are shut down by their owner (src/peer-registry.ts).
    postMessageToThread(busThread, { kind: WATCH_KIND, port: port2 }, [port2]).catch(() => undefined);
  }
  watches.set(busThread, watch);
  return watch;
}
