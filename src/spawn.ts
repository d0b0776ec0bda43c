/*
 * bus.spawn(): a worker and its peer in one call, and Peer.open() with no argument on
 * the worker's side.
 *
 * Owner side, in order: check every name and reference (nothing is created for bad
 * input), mint the peer, create its named nodes, give it its named handles (bus1
 * HANDLE_TRANSFER), start the Worker with the caller's WorkerOptions untouched (its
 * workerData included), post the ticket as the worker's first message, and wait until
 * the worker has opened its peer (the CTL_OPENED word of the ticket). If anything fails
 * before the peer is opened (a bad node or handle, a worker that exits first or times
 * out), the coordinator is told to disconnect the half-made peer (dropUnopened), which
 * gives back everything charged for it. A ticket carries no death watch of its own: that
 * comes with Peer.open() (src/peer/watch.ts).
 *
 * Worker side: the ticket is the first message on parentPort, taken synchronously with
 * receiveMessageOnPort, so Peer.open() can run on the worker's first line. Only the first
 * call takes it.
 */

import { Worker, parentPort, receiveMessageOnPort, type WorkerOptions } from 'node:worker_threads';
import { BusError } from './errors.js';
import type { HandleId } from './message.js';
import type { PeerTicket } from './ticket.js';
import type { Limits } from './coordinator/ledger.js';
import { CTL_OPENED } from '../shared/layout.js';
import { checkMs } from './abort.js';

/** The owner's reference to a node of a spawned peer: pass it in another spawn's `handles`, or to bus.transferHandle(). */
export class NodeRef {
  constructor(readonly ticket: PeerTicket, readonly handle: HandleId, readonly name: string) {}
}

export interface SpawnOptions extends WorkerOptions {
  uid: number;
  limits?: Partial<Limits>;
  /** Nodes created for the new peer (it owns them), by name. */
  nodes?: string[];
  /** Handles the new peer holds from its first line, by name. */
  handles?: Record<string, NodeRef>;
  /** How long the worker may take to call Peer.open() (default 30 000 ms); then ETIMEDOUT and the worker is terminated. */
  openTimeout?: number;
}

export interface Spawned {
  worker: Worker;
  /** What bus.createPeer() would have returned: the owner's name for this peer. */
  ticket: PeerTicket;
  nodes: Record<string, NodeRef>;
  /** Resolves with the worker's exit code. */
  exited: Promise<number>;
}

/** What spawnPeer needs from the Bus (its public calls). */
export interface Minter {
  createPeer(opts: { uid: number; limits?: Partial<Limits>; name?: string }): Promise<PeerTicket>;
  createNode(ticket: PeerTicket): Promise<HandleId>;
  transferHandle(from: PeerTicket, handle: HandleId, to: PeerTicket): Promise<HandleId>;
}

const SPAWN_KIND = 'threadbus.spawn';
const NAME = /^[A-Za-z_$][\w$]*$/;
const DEFAULT_OPEN_TIMEOUT_MS = 30_000;

function checkName(name: unknown, seen: Set<string>): string {
  if (typeof name !== 'string' || !NAME.test(name) || name === '__proto__') {
    throw new BusError('EINVAL', `spawn: ${JSON.stringify(name)} is not a valid name (letters, digits, _ and $; not starting with a digit)`);
  }
  if (seen.has(name)) throw new BusError('ENOTUNIQ', `spawn: the name '${name}' is given twice`);
  seen.add(name);
  return name;
}

export async function spawnPeer(
  bus: Minter, url: string | URL, opts: SpawnOptions, dropUnopened: (ticket: PeerTicket) => Promise<void>,
): Promise<Spawned> {
  if (typeof opts !== 'object' || opts === null) throw new BusError('EINVAL', 'spawn: expects options with a uid');
  const { uid, limits, nodes = [], handles = {}, openTimeout, ...workerOptions } = opts;
  const timeout = checkMs(openTimeout ?? DEFAULT_OPEN_TIMEOUT_MS, 'spawn', 'openTimeout');
  if (!Array.isArray(nodes)) throw new BusError('EINVAL', 'spawn: nodes must be an array of names');
  if (typeof handles !== 'object' || handles === null) throw new BusError('EINVAL', 'spawn: handles must be an object of names');
  const seen = new Set<string>();
  for (const n of nodes) checkName(n, seen);
  for (const [n, ref] of Object.entries(handles)) {
    checkName(n, seen);
    if (!(ref instanceof NodeRef)) {
      throw new BusError('EINVAL', `spawn: handles.${n} is not a node reference (use another spawn's nodes.NAME)`);
    }
  }
  const ticket = await bus.createPeer({ uid, limits, name: typeof workerOptions.name === 'string' ? workerOptions.name : undefined });
  const names: Record<string, HandleId> = {};
  const refs: Record<string, NodeRef> = {};
  let worker: Worker;
  try {
    for (const n of nodes) {
      names[n] = await bus.createNode(ticket);
      refs[n] = new NodeRef(ticket, names[n], n);
    }
    for (const [n, ref] of Object.entries(handles)) names[n] = await bus.transferHandle(ref.ticket, ref.handle, ticket);
    worker = new Worker(url, workerOptions);
  } catch (e) {
    await dropUnopened(ticket).catch(() => undefined);
    throw e;
  }
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  worker.postMessage({ kind: SPAWN_KIND, ticket, handles: names }, ticket.transfer);
  try {
    await opened(ticket, worker, exited, timeout);
  } catch (e) {
    await dropUnopened(ticket).catch(() => undefined);
    throw e;
  }
  return { worker, ticket, nodes: refs, exited };
}

/** Resolves once the worker has opened the ticket; rejects if it exits first or takes too long. */
async function opened(ticket: PeerTicket, worker: Worker, exited: Promise<number>, timeout: number): Promise<void> {
  const ctl = new Int32Array(ticket.ctlSab);
  const deadline = performance.now() + timeout;
  let exitCode: number | null = null;
  void exited.then((code) => { exitCode = code; });
  for (;;) {
    if (Atomics.load(ctl, CTL_OPENED) !== 0) return;
    if (exitCode !== null) {
      throw new BusError('ESHUTDOWN', `spawn: the worker exited (code ${exitCode}) before opening its peer`);
    }
    const left = deadline - performance.now();
    if (left <= 0) {
      await worker.terminate();
      throw new BusError('ETIMEDOUT', `spawn: the worker did not call Peer.open() within ${timeout} ms; it was terminated`);
    }
    // Peer.open() notifies CTL_OPENED; the exit event ends the wait through the race.
    const w = Atomics.waitAsync(ctl, CTL_OPENED, 0, Math.min(left, 1000));
    if (w.async) await Promise.race([w.value, exited]);
  }
}

let taken = false;

/** Worker side: the ticket and names bus.spawn() posted (Peer.open() with no argument). */
export function takeSpawnedTicket(): { ticket: PeerTicket; handles: Readonly<Record<string, HandleId>> } {
  if (parentPort === null) {
    throw new BusError('EINVAL', 'Peer.open(): without a ticket it only works in a worker started by bus.spawn()');
  }
  if (taken) throw new BusError('EINVAL', 'Peer.open(): the spawned peer of this worker was already opened');
  const m = receiveMessageOnPort(parentPort)?.message as { kind?: string; ticket: PeerTicket; handles: Record<string, HandleId> } | undefined;
  if (m === undefined || m.kind !== SPAWN_KIND) {
    throw new BusError('EINVAL', 'Peer.open(): without a ticket it only works in a worker started by bus.spawn() (no ticket was posted to this worker)');
  }
  taken = true;
  return { ticket: m.ticket, handles: Object.freeze({ ...m.handles }) };
}
