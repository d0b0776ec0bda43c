/*
 * Wiring one bench phase's transport, before any thread starts: on threadbus, a bus of
 * its own with one peer per plan entry (receiving roles own a node, every sender holds a
 * handle to each of its destinations, a client also to its own node for replies); for
 * --compare messageport, one MessageChannel per sender-receiver edge. Returns what each
 * peer thread gets in its workerData and transfer list. A failed wiring closes its bus.
 */

import { MessageChannel, type MessagePort, type TransferListItem } from 'node:worker_threads';
import { Bus, type PeerTicket } from '../../index.js';
import type { BenchConfig } from './options.js';
import type { PeerPlan } from './plan.js';
import type { WorkerInit } from './run-peer.js';

export type Transport = 'threadbus' | 'messageport';

export interface Wiring {
  inits: WorkerInit[];
  transfers: TransferListItem[][];
  bus: Bus | null;
}

export async function wireThreadbus(cfg: BenchConfig, plans: PeerPlan[], ctl: SharedArrayBuffer, tickMs: number): Promise<Wiring> {
  const bus = await Bus.start({ userLimits: cfg.limits, maxMessageBytes: Math.max(cfg.size, 1024) });
  try {
    const tickets: PeerTicket[] = [];
    const nodes: number[] = [];
    for (const p of plans) {
      tickets.push(await bus.createPeer({ uid: p.uid }));
      nodes.push(p.role === 'sender' ? 0 : await bus.createNode(tickets[p.index]!));
    }
    const inits: WorkerInit[] = [];
    for (const p of plans) {
      const handles: number[] = [];
      for (const d of p.dests) handles.push(await bus.transferHandle(tickets[d]!, nodes[d]!, tickets[p.index]!));
      inits.push({
        transport: 'threadbus', plan: p, size: cfg.size, ctl, tickMs,
        ticket: tickets[p.index]!, handles, replyHandle: nodes[p.index]!,
      });
    }
    return { inits, transfers: tickets.map((t) => t.transfer), bus };
  } catch (e) {
    await bus.close().catch(() => undefined);
    throw e;
  }
}

export function wireMessagePort(cfg: BenchConfig, plans: PeerPlan[], ctl: SharedArrayBuffer, tickMs: number): Wiring {
  const ports: MessagePort[][] = plans.map(() => []);
  for (const p of plans) {
    for (const d of p.dests) {
      const ch = new MessageChannel();
      ports[p.index]!.push(ch.port1);
      ports[d]!.push(ch.port2);
    }
  }
  return {
    inits: plans.map((p) => ({ transport: 'messageport', plan: p, size: cfg.size, ctl, tickMs, ports: ports[p.index]! })),
    transfers: ports,
    bus: null,
  };
}
