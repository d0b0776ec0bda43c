/*
 * The owner's API (the holder of /dev/bus1, so to speak): start the coordinator thread,
 * mint peer tickets, create nodes for peers, transfer handles between them, read
 * per-user usage, and shut everything down.
 *
 * The owner talks to the coordinator over the worker's MessagePort only (control path);
 * it never touches a ring. Requests made in one task go as one message (an array), and
 * the coordinator answers them with one message: creating many peers costs one round
 * trip, not one each (src/control.ts). If the coordinator thread dies, every pending and
 * later call fails with ESHUTDOWN.
 */

import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { BusError, toBusError } from './errors.js';
import { checkTicket, lentPorts, type PeerTicket } from './ticket.js';
import type { ControlReply, ControlRequest, ControlStarted, PeerCreatedWire } from './control.js';
import type { HandleId } from './message.js';
import type { Limits } from './coordinator/ledger.js';
import { DEFAULT_USER_LIMITS } from './coordinator/users.js';
import { DEFAULT_MAX_MESSAGE_BYTES, BELL_CONTROL, BELL_COUNTER, peerLayout } from '../shared/layout.js';
import { PeerRegistry } from './peer-registry.js';
import { weighForCollection } from './memory-weight.js';
import { spawnPeer, NodeRef, type SpawnOptions, type Spawned } from './spawn.js';
import type { BusStats } from './stats.js';

export interface BusOptions {
  /** Per-uid maxima; defaults 16384 messages, 65536 handles, 16 MiB. */
  userLimits?: Partial<Limits>;
  /** Default limits of each new peer (at most its user's; the pool is sized from them). */
  peerLimits?: Partial<Limits>;
  /** Per-uid maxima overriding userLimits (a system agent's uid, say). */
  users?: Record<number, Partial<Limits>>;
  /** The quota rule: 'half' (the seed's, default) or 'polynomial' (dbus-broker's). */
  quota?: 'half' | 'polynomial';
  /** Largest payload of one message, in bytes (default 1 MiB). */
  maxMessageBytes?: number;
}

export interface Usage {
  max: Limits;
  remaining: Limits;
  /** In-flight resources by sending uid (only uids with something in flight). */
  shares: Record<number, Limits>;
}

/** A control request before it gets its id. */
type ControlBody = ControlRequest extends infer R ? R extends unknown ? Omit<R, 'id'> : never : never;

const LIMIT_KEYS = ['messages', 'handles', 'bytes'] as const;

/**
 * The coordinator's young generation (V8 makes it three semi-spaces: 1 MiB each, V8's
 * starting size). Its data path allocates next to nothing, but every peer it creates
 * survives, and a burst of createPeer made V8 grow the semi-spaces towards 16 MiB, which
 * then stay resident: 1.0-1.9 KiB more RSS per peer with 2000 idle peers (measured,
 * docs/performance.md). Garbage never grows them, so a steady stream is not affected.
 */
const COORDINATOR_YOUNG_GENERATION_MB = 3;


function checkUid(uid: unknown, what: string): number {
  if (typeof uid !== 'number' || !Number.isSafeInteger(uid) || uid < 0) {
    throw new BusError('EINVAL', `${what}: uid must be a non-negative safe integer, got ${String(uid)}`);
  }
  return uid;
}

function checkLimits(l: unknown, what: string): Partial<Limits> | undefined {
  if (l === undefined) return undefined;
  if (typeof l !== 'object' || l === null) throw new BusError('EINVAL', `${what}: limits must be an object`);
  const out: Partial<Limits> = {};
  for (const [k, v] of Object.entries(l)) {
    if (!(LIMIT_KEYS as readonly string[]).includes(k)) {
      throw new BusError('EINVAL', `${what}: unknown limit '${k}' (expected messages, handles or bytes)`);
    }
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > 2 ** 31 - 1) {
      throw new BusError('EINVAL', `${what}: limit ${k} must be an integer from 0 to 2^31-1, got ${String(v)}`);
    }
    out[k as keyof Limits] = v;
  }
  return out;
}

/**
 * @internal For tests only, and deliberately not exported from index.ts (nor reachable
 * through the package's exports): the coordinator's Worker, so that a test can kill it.
 */
export let coordinatorWorkerOf: (bus: Bus) => Worker;

/** The bus that minted each ticket of this thread, to make the ticket's port on demand. */
const mintedBy = new WeakMap<object, Bus>();
let lendPort: (ticket: PeerTicket) => MessagePort;

/**
 * A ticket's `port` and `transfer`: made when first read (posting the ticket reads them),
 * so a ticket opened in this thread never costs a channel (src/ticket.ts). Shared getter
 * functions, so that every ticket has the same shape.
 */
const LENT_PORT: PropertyDescriptorMap = {
  port: { enumerable: true, get(this: PeerTicket) { return lendPort(this); } },
  transfer: { enumerable: true, get(this: PeerTicket) { return [lendPort(this)]; } },
};

export class Bus {
  static {
    coordinatorWorkerOf = (bus) => bus.#worker;
    lendPort = (ticket) => {
      let port = lentPorts.get(ticket);
      if (port === undefined) {
        const { port1, port2 } = new MessageChannel();
        lentPorts.set(ticket, port = port2);
        mintedBy.get(ticket)!.#call<void>({ op: 'watchTicket', peerId: ticket.peerId, port: port1 }, 'createPeer', [port1])
          .catch(() => undefined);
      }
      return port;
    };
  }
  #worker: Worker;
  #peers = new PeerRegistry();
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  #nextId = 1;
  /** Requests made in this task, posted together by #flush (a microtask). */
  #queue: ControlRequest[] = [];
  #transfer: MessagePort[] = [];
  #flushFn = () => this.#flush();
  #closed = false;
  #dead: BusError | null = null;
  #exited: Promise<void>;
  /** The coordinator's doorbell: rung after each control request, so that a blocked coordinator turns to it. */
  #doorbell: Int32Array | null = null;
  #doorbellSab: SharedArrayBuffer | null = null;
  /** The coordinator's threadId, which every ticket carries (src/peer/watch.ts). */
  #busThread = 0;
  /** What every peer of this bus shares (ControlStarted). */
  #outRingBytes = 0;
  #maxMessageBytes = 0;

  private constructor(worker: Worker) {
    this.#worker = worker;
    this.#exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    const settle = (msg: ControlReply) => {
      const p = this.#pending.get(msg.id);
      if (p === undefined) return;
      this.#pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.value);
      else p.reject(toBusError(msg.error));
    };
    worker.on('message', (msg: ControlReply | ControlReply[]) => {
      if (Array.isArray(msg)) for (const m of msg) settle(m);
      else settle(msg);
    });
    const die = (why: string) => {
      this.#dead ??= new BusError('ESHUTDOWN', `the bus coordinator thread ${why}`);
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
    };
    worker.on('error', (e) => {
      // A coordinator crash is a threadbus bug; say so loudly, then fail everything cleanly.
      process.emitWarning(`threadbus coordinator crashed: ${e.stack ?? e.message}`, 'ThreadbusWarning');
      die(`failed: ${e.message}`);
      // Its thread runs no more JavaScript after an uncaught error; 'exit' can come much later.
      this.#peers.shutDownAll();
    });
    worker.on('exit', (code) => {
      die(`exited (code ${code})`);
      // Peers blocked in a wait would never learn of it otherwise (after close() they already have).
      this.#peers.shutDownAll();
    });
  }

  /** Start the coordinator thread. */
  static async start(opts: BusOptions = {}): Promise<Bus> {
    if (typeof opts !== 'object' || opts === null) throw new BusError('EINVAL', 'Bus.start: options must be an object');
    const quota = opts.quota ?? 'half';
    if (quota !== 'half' && quota !== 'polynomial') {
      throw new BusError('EINVAL', `Bus.start: quota must be 'half' or 'polynomial', got ${String(quota)}`);
    }
    const userLimits = { ...DEFAULT_USER_LIMITS, ...checkLimits(opts.userLimits, 'Bus.start userLimits') };
    const peerLimits = checkLimits(opts.peerLimits, 'Bus.start peerLimits') ?? {};
    const users: Record<number, Partial<Limits>> = {};
    for (const [k, v] of Object.entries(opts.users ?? {})) {
      users[checkUid(Number(k), 'Bus.start users')] = checkLimits(v, `Bus.start users[${k}]`) ?? {};
    }
    const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < 0 || maxMessageBytes > 64 * 1024 * 1024) {
      throw new BusError('EINVAL', `Bus.start: maxMessageBytes must be an integer from 0 to 64 MiB`);
    }
    const worker = new Worker(new URL('../workers/coordinator.js', import.meta.url), {
      workerData: { config: { userLimits, peerLimits, users, quota, maxMessageBytes } },
      name: 'threadbus-coordinator',
      resourceLimits: { maxYoungGenerationSizeMb: COORDINATOR_YOUNG_GENERATION_MB },
    });
    const bus = new Bus(worker);
    await new Promise<void>((resolve, reject) => {
      bus.#pending.set(0, {
        resolve: (v) => {
          const started = v as ControlStarted;
          bus.#doorbellSab = started.doorbell;
          bus.#doorbell = new Int32Array(started.doorbell);
          bus.#busThread = started.busThread;
          bus.#outRingBytes = started.outRingBytes;
          bus.#maxMessageBytes = started.maxMessageBytes;
          resolve();
        },
        reject,
      });
    });
    return bus;
  }

  #call<T>(req: ControlBody, what: string, transfer?: MessagePort[]): Promise<T> {
    if (this.#closed || this.#dead !== null) {
      return Promise.reject(new BusError('ESHUTDOWN', `${what}: the bus is closed`));
    }
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      if (transfer !== undefined) this.#transfer.push(...transfer);
      if (this.#queue.push({ ...req, id } as ControlRequest) === 1) queueMicrotask(this.#flushFn);
    });
  }

  /** Post the requests of this task as one message and ring the coordinator once. */
  #flush(): void {
    const q = this.#queue;
    const transfer = this.#transfer;
    this.#queue = [];
    this.#transfer = [];
    // Died meanwhile: die() has rejected them already.
    if (this.#dead !== null || q.length === 0) return;
    this.#worker.postMessage(q.length === 1 ? q[0] : q, transfer);
    const db = this.#doorbell!;
    Atomics.store(db, BELL_CONTROL, 1);
    Atomics.add(db, BELL_COUNTER, 1);
    Atomics.notify(db, BELL_COUNTER);
  }

  /** The coordinator's worker threadId (to tell its CPU profile apart from the others). */
  get coordinatorThreadId(): number {
    return this.#worker.threadId;
  }

  /** Mint a single-use ticket for a new peer pinned to `uid` (`name` shows in bus.stats()). */
  async createPeer(opts: { uid: number; limits?: Partial<Limits>; name?: string }): Promise<PeerTicket> {
    if (typeof opts !== 'object' || opts === null) throw new BusError('EINVAL', 'createPeer: expects { uid }');
    const uid = checkUid(opts.uid, 'createPeer');
    const limits = checkLimits(opts.limits, 'createPeer limits');
    const name = typeof opts.name === 'string' ? opts.name : undefined;
    const [peerId, inSab, ctlSab, descriptorSlots, messages, handles, bytes] =
      await this.#call<PeerCreatedWire>({ op: 'createPeer', uid, limits, name }, 'createPeer');
    const layout = peerLayout(this.#outRingBytes, descriptorSlots, 0);
    // Peers found gone: start a collection that frees their buffers, without which this
    // thread could keep them mapped for hours (src/memory-weight.ts).
    if (this.#peers.add(inSab, ctlSab, layout.descriptorOffset, layout.outOffset) > 0) weighForCollection(inSab);
    const ticket = Object.defineProperties({
      kind: 'threadbus.ticket', peerId, uid, limits: { messages, handles, bytes }, inSab, ctlSab,
      doorbell: this.#doorbellSab!, outOffset: layout.outOffset, outRingBytes: this.#outRingBytes,
      verdictOffset: layout.verdictOffset, descriptorOffset: layout.descriptorOffset, descriptorSlots,
      maxMessageBytes: this.#maxMessageBytes, busThread: this.#busThread,
    }, LENT_PORT) as PeerTicket;
    mintedBy.set(ticket, this);
    return ticket;
  }

  /** A node owned by the ticket's peer; returns that peer's handle id for it. */
  createNode(ticket: PeerTicket): Promise<HandleId> {
    try {
      checkTicket(ticket, 'createNode');
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#call<HandleId>({ op: 'createNode', peerId: ticket.peerId }, 'createNode');
  }

  /** bus1 HANDLE_TRANSFER: give `to` a handle to the node `from` holds as `handle`; returns `to`'s id. */
  transferHandle(from: PeerTicket, handle: HandleId | NodeRef, to: PeerTicket): Promise<HandleId> {
    if (handle instanceof NodeRef) handle = handle.handle;
    try {
      checkTicket(from, 'transferHandle');
      checkTicket(to, 'transferHandle');
      if (!Number.isInteger(handle) || handle <= 0 || handle > 0xffffffff) throw new BusError('EINVAL', `transferHandle: ${handle} is not a handle id`);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#call<HandleId>({ op: 'transferHandle', fromId: from.peerId, handle, toId: to.peerId }, 'transferHandle');
  }

  /** Exact per-user figures: maxima, what remains, and what is in flight from each sending uid. */
  usage(uid: number): Promise<Usage> {
    try {
      checkUid(uid, 'usage');
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#call<Usage>({ op: 'usage', uid }, 'usage');
  }

  /** A worker and its peer in one call: named nodes, named handles, then the Worker (src/spawn.ts). */
  spawn(url: string | URL, opts: SpawnOptions): Promise<Spawned> {
    // A peer whose worker failed before opening it is disconnected, its charges given back.
    return spawnPeer(this, url, opts, (t) => this.#call<void>({ op: 'dropPeer', peerId: t.peerId }, 'spawn'));
  }

  /** Counters the coordinator keeps as it works (src/stats.ts); cheap enough to read often. */
  stats(): Promise<BusStats> {
    return this.#call<BusStats>({ op: 'stats' }, 'stats');
  }

  /** Shut the bus down: every peer then sees ESHUTDOWN, and the coordinator thread exits. */
  async close(): Promise<void> {
    if (this.#closed) throw new BusError('ESHUTDOWN', 'close: the bus is already closed');
    if (this.#dead === null) {
      const p = this.#call<void>({ op: 'close' }, 'close');
      this.#closed = true;
      await p.catch(() => undefined);
      await this.#exited;
      return;
    }
    // The coordinator died first: like every bus.* call, close() reports it (ESHUTDOWN), but
    // only once everything is released and the thread is gone, so that cleanup has finished.
    this.#closed = true;
    await this.#exited;
    throw new BusError('ESHUTDOWN', `close: the coordinator thread died before the bus was closed (${this.#dead.message})`);
  }
}
