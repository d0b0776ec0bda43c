/*
 * The coordinator thread's entry point: the only party that validates, accounts, orders
 * and publishes (the /dev/bus1 of threadbus). Started by Bus.start().
 *
 * Two kinds of input reach it:
 *   - the data path: the OUT rings of the peers whose bell rang (Coordinator.runOnce);
 *   - control: the owner's requests over parentPort (a batch per message), and one
 *     death watch per peer thread (a MessagePort that thread sent with
 *     postMessageToThread), whose 'close' event says that the thread is gone (exit,
 *     terminate, crash): its peers are then disconnected (src/peer/watch.ts).
 * Control needs the event loop, so the loop never runs longer than LOOP_SLICE_MS before
 * yielding with setImmediate. The owner sets BELL_CONTROL and rings the doorbell after
 * posting a request, so a blocked coordinator goes to its event loop at once.
 *
 * Waiting, in three stages (docs/architecture.md, Waiting):
 *   hot   for IDLE_SPIN_MS with nothing to do it keeps polling: an answer that comes
 *         within that time costs no wake-up on either side;
 *   warm  then, while the bus was busy within WARM_MS, it blocks in Atomics.wait on the
 *         doorbell for at most BLOCK_SLICE_MS at a time, returning to its event loop
 *         between slices (death notices wait at most that long); a peer's wake reaches
 *         it directly, not through the event loop;
 *   cold  after that it sleeps through the event loop (Atomics.waitAsync), costing
 *         nothing at all while the bus is idle.
 * Before blocking it hands every idle peer back to its bell (Coordinator.beginSleep):
 * only a peer whose ring is not polled pays for a notify. Each turn to the event loop
 * also sweeps a share of the unpolled rings (Coordinator.sweep), all of them within
 * SWEEP_PERIOD_MS, so a bell cleared by a hostile peer delays its victim by that much
 * at most (one cold sleep, a second, when the bus is idle). Every wait has a timeout, so a lost or forged doorbell costs latency,
 * never a hang.
 */

import { parentPort, workerData, threadId, MessagePort } from 'node:worker_threads';
import { Coordinator, type CoordinatorConfig } from '../src/coordinator/coordinator.js';
import {
  STATE_DISCONNECTED, REASON_THREAD_EXIT, BELL_COUNTER, BELL_CONTROL, BELL_WAKES, BELL_SPIN_SLOTS, outRingBytes,
} from '../shared/layout.js';
import { PEER_SPINNERS, Spinner, blockWhileEqual, wakesSoFar } from '../shared/wait.js';
import { BusError } from '../src/errors.js';
import { WATCH_KIND, peerCreatedWire, type ControlRequest, type ControlReply, type ControlStarted } from '../src/control.js';

/** Longest stretch of ring processing before control messages get a turn. */
const LOOP_SLICE_MS = 2;
/** How long to keep polling an idle bus before blocking (the hot stage). */
const IDLE_SPIN_MS = 0.05;
/** Longest single blocking wait in the warm stage. */
const BLOCK_SLICE_MS = 5;
/** How long after the last work the coordinator blocks in Atomics.wait rather than the event loop. */
const WARM_MS = 200;
/** Sleep bound while a peer is stalled or has descriptors held back (it may read at any time). */
const POLL_MS = 1;
const IDLE_SLEEP_MS = 1000;

const config = workerData.config as CoordinatorConfig;
config.users = new Map(Object.entries(workerData.config.users ?? {}).map(([k, v]) => [Number(k), v as never]));
const coordinator = new Coordinator(config);
const doorbell = coordinator.doorbellI32;
const port = parentPort!;
let stopped = false;

/** Wake the loop if it sleeps, so that new work is seen. */
function kick(): void {
  Atomics.add(doorbell, BELL_COUNTER, 1);
  Atomics.notify(doorbell, BELL_COUNTER);
}

/** One control request's reply (null: none, for 'test-crash'). */
function handle(req: ControlRequest): ControlReply | null {
  try {
    switch (req.op) {
      case 'createPeer':
        return { id: req.id, ok: true, value: peerCreatedWire(coordinator.createPeer(req.uid, req.limits, req.name)) };
      case 'createNode':
        return { id: req.id, ok: true, value: coordinator.ownerCreateNode(coordinator.peerById(req.peerId)) };
      case 'transferHandle':
        return {
          id: req.id, ok: true,
          value: coordinator.transferHandle(coordinator.peerById(req.fromId), req.handle, coordinator.peerById(req.toId)),
        };
      case 'usage':
        return { id: req.id, ok: true, value: coordinator.usage(req.uid) };
      case 'stats':
        return { id: req.id, ok: true, value: coordinator.stats() };
      case 'watchTicket':
        coordinator.watchTicket(req.peerId, req.port, kick);
        return { id: req.id, ok: true, value: null };
      case 'dropPeer':
        coordinator.disconnectById(req.peerId, STATE_DISCONNECTED, REASON_THREAD_EXIT);
        return { id: req.id, ok: true, value: null };
      case 'close':
        coordinator.closeAll();
        stopped = true;
        return { id: req.id, ok: true, value: null };
      case 'test-crash':
        setImmediate(() => {
          throw new Error('threadbus coordinator: crash requested by a test');
        });
        return null;
      default:
        throw new BusError('EINVAL', `unknown control operation`);
    }
  } catch (err) {
    if (err instanceof BusError) return { id: req.id, ok: false, error: err.toJSON() };
    return { id: req.id, ok: false, error: { code: 'EINVAL', message: String((err as Error)?.stack ?? err) } };
  }
}

// The owner posts the requests of one task as an array; they are answered as one message.
port.on('message', (msg: ControlRequest | ControlRequest[]) => {
  if (Array.isArray(msg)) {
    const replies: ControlReply[] = [];
    for (const req of msg) {
      const r = handle(req);
      if (r !== null) replies.push(r);
    }
    if (replies.length > 0) port.postMessage(replies);
  } else {
    const r = handle(msg);
    if (r !== null) port.postMessage(r);
  }
  if (stopped) port.close();
  else kick();
});

// A thread that opens peers sends its death watch (src/peer/watch.ts); Node names the sender.
process.on('workerMessage', (msg: unknown, source: number) => {
  const m = msg as { kind?: unknown; port?: unknown } | null;
  if (m === null || typeof m !== 'object' || m.kind !== WATCH_KIND || !(m.port instanceof MessagePort)) return;
  coordinator.watchThread(source, m.port, kick);
});

/** When the data path last had work (performance.now()), and whether it had any since. */
let lastWork = 0;
let hadWork = false;
/** Wake-ups from event-loop sleeps (not through shared/wait.ts, which would keep this thread alive); BELL_WAKES adds them. */
let coldWakes = 0;

function loop(): void {
  if (stopped) return;
  const sliceEnd = performance.now() + LOOP_SLICE_MS;
  let idleSince = -1;
  // Set when a round woke a sleeping receiver while every spare core holds a spinning peer.
  let handOver = false;
  for (let round = 1; ; round++) {
    const woken = coordinator.woken;
    if (coordinator.runOnce() > 0) {
      idleSince = -1;
      hadWork = true;
      if (coordinator.woken !== woken && Spinner.allHeld(doorbell, BELL_SPIN_SLOTS, PEER_SPINNERS)) handOver = true;
      if ((round & 63) === 0 && performance.now() > sliceEnd) return yieldToEvents();
      continue;
    }
    const now = performance.now();
    if (idleSince < 0) {
      idleSince = now;
      if (hadWork) lastWork = now;
      hadWork = false;
    }
    if (now > sliceEnd || Atomics.load(doorbell, BELL_CONTROL) !== 0) return yieldToEvents();
    // The thread just woken can only run on this core: block now rather than spin.
    if (!handOver && now - idleSince < IDLE_SPIN_MS) continue;
    if (now - lastWork >= WARM_MS) return sleepCold();
    if (!coordinator.beginSleep()) continue;
    handOver = false;
    const r = blockWhileEqual(doorbell, BELL_COUNTER, coordinator.sleepSeen, coordinator.needsPolling() ? POLL_MS : BLOCK_SLICE_MS);
    if (r === 'timed-out') return yieldToEvents();
    Atomics.store(doorbell, BELL_WAKES, wakesSoFar() + coldWakes);
    idleSince = -1;
  }
}

function yieldToEvents(): void {
  Atomics.store(doorbell, BELL_CONTROL, 0);
  coordinator.sweep();
  setImmediate(loop);
}

function sleepCold(): void {
  coordinator.sweep();
  if (!coordinator.beginSleep()) return yieldToEvents();
  const w = Atomics.waitAsync(doorbell, BELL_COUNTER, coordinator.sleepSeen, coordinator.needsPolling() ? POLL_MS : IDLE_SLEEP_MS);
  if (!w.async) return yieldToEvents();
  void w.value.then((r) => {
    // Woken by a peer: the bus is busy again, so the next waits are warm ones.
    if (r !== 'timed-out') {
      lastWork = performance.now();
      Atomics.store(doorbell, BELL_WAKES, wakesSoFar() + ++coldWakes);
    }
    loop();
  });
}

const started: ControlStarted = {
  doorbell: coordinator.doorbell, busThread: threadId, outRingBytes: outRingBytes(config.maxMessageBytes),
  maxMessageBytes: config.maxMessageBytes,
};
port.postMessage({ id: 0, ok: true, value: started } satisfies ControlReply);
loop();
