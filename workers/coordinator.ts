/*
 * The coordinator thread's entry point: the only party that validates, accounts, orders
 * and publishes (the /dev/bus1 of threadbus). Started by Bus.start().
 *
 * Two kinds of input reach it:
 *   - the data path: every peer's OUT ring, polled by the loop below;
 *   - control: the owner's requests over parentPort, and each peer's MessagePort, whose
 *     'close' event says that the peer's thread is gone (exit, terminate, crash).
 * Control needs the event loop, so the loop never runs longer than LOOP_SLICE_MS before
 * yielding with setImmediate.
 *
 * Sleeping: after IDLE_SPIN_MS with nothing to do, the loop raises the "consumer
 * sleeping" flag in every peer's OUT ring, checks once more, and waits on the doorbell
 * with Atomics.waitAsync. A peer that publishes while the flag is up bumps the doorbell
 * and notifies; otherwise peers never pay for a wake-up. The wait has a timeout, so a
 * lost or forged doorbell costs latency, never a hang.
 */

import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { Coordinator, type CoordinatorConfig } from '../src/coordinator/coordinator.js';
import { STATE_DISCONNECTED, REASON_THREAD_EXIT } from '../shared/layout.js';
import { BusError } from '../src/errors.js';
import type { ControlRequest, ControlReply } from '../src/control.js';

/** Longest stretch of ring processing before control messages get a turn. */
const LOOP_SLICE_MS = 2;
/** How long to keep polling an idle bus before sleeping. */
const IDLE_SPIN_MS = 0.05;
/** Sleep bound while a peer is stalled or has descriptors held back (it may read at any time). */
const POLL_MS = 1;
const IDLE_SLEEP_MS = 1000;

const config = workerData.config as CoordinatorConfig;
config.users = new Map(Object.entries(workerData.config.users ?? {}).map(([k, v]) => [Number(k), v as never]));
const coordinator = new Coordinator(config);
const doorbell = coordinator.doorbellI32;
const port = parentPort!;
let stopped = false;

function reply(msg: ControlReply, transfer?: MessagePort[]): void {
  port.postMessage(msg, transfer ?? []);
}

/** Wake the loop if it sleeps, so that new peers get their flags and new work is seen. */
function kick(): void {
  Atomics.add(doorbell, 0, 1);
  Atomics.notify(doorbell, 0);
}

port.on('message', (req: ControlRequest) => {
  try {
    switch (req.op) {
      case 'createPeer': {
        const { created, port: peerPort } = coordinator.createPeer(req.uid, req.limits, req.name);
        const mine = coordinator.peers[coordinator.peers.length - 1].port;
        mine.on('close', () => {
          coordinator.disconnectById(created.peerId, STATE_DISCONNECTED, REASON_THREAD_EXIT);
          kick();
        });
        // The port only watches for the peer's death; it must not keep this thread alive.
        mine.unref();
        reply({ id: req.id, ok: true, value: { ...created, doorbell: coordinator.doorbell, port: peerPort } }, [peerPort]);
        break;
      }
      case 'createNode':
        reply({ id: req.id, ok: true, value: coordinator.ownerCreateNode(coordinator.peerById(req.peerId)) });
        break;
      case 'transferHandle':
        reply({
          id: req.id, ok: true,
          value: coordinator.transferHandle(coordinator.peerById(req.fromId), req.handle, coordinator.peerById(req.toId)),
        });
        break;
      case 'usage':
        reply({ id: req.id, ok: true, value: coordinator.usage(req.uid) });
        break;
      case 'stats':
        reply({ id: req.id, ok: true, value: coordinator.stats() });
        break;
      case 'close':
        coordinator.closeAll();
        stopped = true;
        reply({ id: req.id, ok: true, value: null });
        port.close();
        return;
      default:
        throw new BusError('EINVAL', `unknown control operation`);
    }
    kick();
  } catch (err) {
    if (err instanceof BusError) {
      reply({ id: req.id, ok: false, error: err.toJSON() });
    } else {
      reply({ id: req.id, ok: false, error: { code: 'EINVAL', message: String((err as Error)?.stack ?? err) } });
    }
  }
});

function loop(): void {
  if (stopped) return;
  const start = performance.now();
  let idleSince = -1;
  for (let round = 0; ; round++) {
    const n = coordinator.runOnce();
    if (n > 0) {
      idleSince = -1;
      if ((round & 63) === 0 && performance.now() - start > LOOP_SLICE_MS) {
        setImmediate(loop);
        return;
      }
      continue;
    }
    const now = performance.now();
    if (idleSince < 0) idleSince = now;
    if (now - idleSince >= IDLE_SPIN_MS) break;
    if (now - start > LOOP_SLICE_MS) {
      setImmediate(loop);
      return;
    }
  }
  sleep();
}

function sleep(): void {
  coordinator.setSleeping(true);
  const seen = Atomics.load(doorbell, 0);
  if (coordinator.hasWork()) {
    coordinator.setSleeping(false);
    setImmediate(loop);
    return;
  }
  const w = Atomics.waitAsync(doorbell, 0, seen, coordinator.needsPolling() ? POLL_MS : IDLE_SLEEP_MS);
  if (!w.async) {
    coordinator.setSleeping(false);
    setImmediate(loop);
    return;
  }
  void w.value.then(() => {
    coordinator.setSleeping(false);
    loop();
  });
}

reply({ id: 0, ok: true, value: 'ready' });
loop();
