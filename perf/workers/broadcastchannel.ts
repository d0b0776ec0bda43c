// Worker roles for the "broadcastchannel" system: one BroadcastChannel post
// reaches every other channel of that name (Node clones once per receiver).
// BroadcastChannel cannot address one member, so acks for the credit window
// travel back on a dedicated MessagePort per receiver.

import { BroadcastChannel, type MessagePort } from 'node:worker_threads';
import { makeTemplate, stamp, type RoleFactory } from '../protocol.js';
import { ackingReceiver, windowedSender, type StreamReceiverCommon, type StreamSenderCommon } from './evented.js';

export interface BcStreamSenderData extends StreamSenderCommon {
  readonly channel: string;
  /** One per receiver. */
  readonly ackPorts: MessagePort[];
  readonly windowMsgs: number;
}

export interface BcStreamReceiverData extends StreamReceiverCommon {
  readonly channel: string;
  readonly ackPort: MessagePort;
  readonly ackEvery: number;
}

const streamSender: RoleFactory = (d: BcStreamSenderData) => {
  const bc = new BroadcastChannel(d.channel);
  const len = d.payloadBytes;
  const tpl = makeTemplate(len);
  return windowedSender(
    d,
    d.ackPorts,
    (seq, sendMs) => {
      stamp(tpl, 0, len, seq, d.src, sendMs);
      bc.postMessage(tpl);
    },
    () => bc.close(),
  );
};

const streamReceiver: RoleFactory = (d: BcStreamReceiverData) => {
  const bc = new BroadcastChannel(d.channel);
  const r = ackingReceiver(d, [d.ackPort], () => bc.close());
  bc.onmessage = (ev: unknown) => r.onMessage(0, (ev as MessageEvent).data as Uint8Array);
  return r.role;
};

export const roles: Record<string, RoleFactory> = {
  'stream-sender': streamSender,
  'stream-receiver': streamReceiver,
};
