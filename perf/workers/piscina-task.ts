// Piscina task for the "piscina" system's request/reply workload: reads the
// request like every other server does and returns it as the reply (piscina
// clones it back to the caller).

import { readSeq } from '../protocol.js';

export default function echo(req: Uint8Array): Uint8Array {
  const seq = readSeq(req, 0);
  if (req[req.length - 1] !== (seq & 0xff)) throw new Error(`corrupt request ${seq}`);
  return req;
}
