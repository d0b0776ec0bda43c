// System "messageport": MessagePort.postMessage between workers, the default
// Node answer. The payload is a Uint8Array, structured-cloned on every post.
// Also builds "messageport-transfer" (see messageport-transfer.ts).

import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { REQREP_PAYLOAD_BYTES, flowControl, hostedReqrep, hostedStream, idleSession, type IdlePeers, type StreamWiring } from '../drivers.js';
import type { BenchSystem, WorkloadFactory, WorkloadName } from '../harness.js';
import { pacedFanin } from '../paced.js';
import type { MpReqrepData, MpStreamReceiverData, MpStreamSenderData } from '../workers/messageport.js';

const ROLES = new URL('../workers/messageport.js', import.meta.url);

function streamWiring(transfer: boolean): StreamWiring {
  return {
    roles: ROLES,
    wire(shape, ctl) {
      const fc = flowControl(shape);
      const sendPorts: MessagePort[][] = Array.from({ length: shape.senders }, () => []);
      const recvPorts: MessagePort[][] = Array.from({ length: shape.receivers }, () => []);
      for (let s = 0; s < shape.senders; s++) {
        for (const r of shape.dests(s)) {
          const ch = new MessageChannel();
          sendPorts[s]!.push(ch.port1);
          recvPorts[r]!.push(ch.port2);
        }
      }
      return {
        senders: sendPorts.map((ports, src) => {
          const data: MpStreamSenderData = {
            ctl,
            src,
            payloadBytes: shape.payloadBytes,
            latencyEvery: shape.latencyEvery,
            ports,
            windowMsgs: fc.windowMsgs,
            transfer,
          };
          return { data, transfer: ports };
        }),
        receivers: recvPorts.map((ports, index) => {
          const data: MpStreamReceiverData = {
            ctl,
            index,
            sources: shape.senders,
            payloadBytes: shape.payloadBytes,
            perSource: shape.perSource,
            latencyEvery: shape.latencyEvery,
            ports,
            ackEvery: fc.ackEvery,
          };
          return { data, transfer: ports };
        }),
      };
    },
  };
}

function reqrep(transfer: boolean): WorkloadFactory {
  return (ctx) =>
    hostedReqrep(ctx, {
      roles: ROLES,
      wire(ctl) {
        const ch = new MessageChannel();
        const client: MpReqrepData = { ctl, port: ch.port1, payloadBytes: REQREP_PAYLOAD_BYTES, transfer };
        const server: MpReqrepData = { ctl, port: ch.port2, payloadBytes: REQREP_PAYLOAD_BYTES, transfer };
        return { client: { data: client, transfer: [ch.port1] }, server: { data: server, transfer: [ch.port2] } };
      },
    });
}

/**
 * idle-peer-memory: a peer is one MessagePort endpoint that is listening
 * (started, with a handler), so n/2 channels make n peers. Ports are unref'd
 * so they don't keep the measuring child alive.
 */
export function idlePeers(n: number): IdlePeers {
  const ports: MessagePort[] = [];
  const noop = () => {};
  for (let i = 0; i < n; i += 2) {
    const ch = new MessageChannel();
    for (const p of [ch.port1, ch.port2]) {
      p.on('message', noop);
      p.unref();
      ports.push(p);
    }
  }
  return { close: () => ports.forEach((p) => p.close()), extra: { endpointsPerChannel: 2 } };
}

export function messagePortSystem(name: string, transfer: boolean): BenchSystem {
  const wiring = streamWiring(transfer);
  const workloads: Partial<Record<WorkloadName, WorkloadFactory>> = {
    'oneway-64B': (ctx) => hostedStream(ctx, 'oneway-64B', wiring),
    'oneway-1KiB': (ctx) => hostedStream(ctx, 'oneway-1KiB', wiring),
    'oneway-64KiB': (ctx) => hostedStream(ctx, 'oneway-64KiB', wiring),
    reqrep: reqrep(transfer),
    'fanin-64': (ctx) => hostedStream(ctx, 'fanin-64', wiring),
    'pairs-64': (ctx) => hostedStream(ctx, 'pairs-64', wiring),
  };
  if (!transfer) {
    // A transferred buffer can only go to one receiver, and transfer changes
    // nothing about an idle port.
    workloads['multicast-8'] = (ctx) => hostedStream(ctx, 'multicast-8', wiring);
    workloads['idle-peer-memory'] = (ctx) => idleSession(ctx, import.meta.url, 'idlePeers');
    workloads['fanin-64-paced'] = pacedFanin('messageport');
  }
  return {
    name,
    description: transfer
      ? 'MessagePort.postMessage, ArrayBuffer transferred (fresh buffer per message)'
      : 'MessagePort.postMessage, Uint8Array structured clone',
    workloads,
  };
}

export const system: BenchSystem = messagePortSystem('messageport', false);
