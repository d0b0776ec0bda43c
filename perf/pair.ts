// A request/reply pair on one bus: a client peer and a server peer, each owning a node
// the other holds a handle to. Shared by the reqrep benchmark (perf/systems/threadbus.ts), perf/wakes.ts and
// test/wakes.test.ts.

import type { Bus, PeerTicket } from '../src/index.js';

export interface Pair {
  client: PeerTicket;
  server: PeerTicket;
  /** The client's handle to the server's node, and the server's to the client's. */
  toServer: number;
  toClient: number;
}

export async function requestPair(bus: Bus, clientUid = 1, serverUid = 2): Promise<Pair> {
  const client = await bus.createPeer({ uid: clientUid });
  const server = await bus.createPeer({ uid: serverUid });
  const serverNode = await bus.createNode(server);
  const clientNode = await bus.createNode(client);
  const toServer = await bus.transferHandle(server, serverNode, client);
  const toClient = await bus.transferHandle(client, clientNode, server);
  return { client, server, toServer, toClient };
}
