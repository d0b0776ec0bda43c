/*
 * The weight of a peer's shared memory in the owner thread's garbage collector.
 *
 * A peer's two SharedArrayBuffers are freed only when every thread that saw them has
 * collected its last reference to them. The owner thread holds such references through
 * the tickets it mints (and its peer registry, src/peer-registry.ts) and keeps them
 * after the peer is gone until the ticket is garbage and a full collection runs. But V8
 * gives shared memory no weight in its collection heuristics (a shared backing store's
 * per-isolate accounting length is 0, so that a buffer seen by N threads is not counted
 * N times), and the owner thread typically allocates so little that it goes for hours
 * without a full collection: the buffers of peers long gone stay mapped, and RSS grows
 * with every peer that comes and goes (issue 10: about 0.5 MiB per soak client).
 *
 * The cure: in the owner thread, each peer's IN buffer carries an ordinary buffer that V8
 * counts as external memory. Minting peers then drives full collections as allocating
 * ArrayBuffers does (V8 starts one after each 64 MiB or so of new external memory), and
 * each such collection frees the dead peers' buffers together with their weights.
 *
 * The weight is what a peer really costs in pages, not what it reserves: weighing the
 * whole reservation (about 390 MiB with the default limits) made every createPeer start
 * a full collection, and minting 2000 peers took 8.7 s instead of about 1 s. At
 * PEER_WEIGHT_BYTES (a used peer touches about 0.5 MiB: the soak's growth per client)
 * a full collection comes every 32 peers or so, which bounds what dead peers can hold
 * to about as much.
 *
 * Invariants:
 *   - a weight lives exactly as long as the owner thread's object for the peer's IN
 *     buffer (a WeakMap entry keyed by it): the ticket's inSab, which the registry's
 *     views also keep alive;
 *   - a weight is never read or written: a resizable ArrayBuffer of fixed size, whose
 *     pages V8 maps straight from the OS and nothing touches, so it costs address space
 *     and no resident memory (an ordinary ArrayBuffer or Buffer comes from malloc, which
 *     touches a page per allocation); V8 counts it in process.memoryUsage().external,
 *     not in arrayBuffers;
 *   - it is advisory: if it cannot be allocated, the peer is minted without it.
 */

/** At most this much weight per peer (see above). */
export const PEER_WEIGHT_BYTES = 2 << 20;

const weights = new WeakMap<SharedArrayBuffer, ArrayBuffer>();

/** Give `inSab` (and with it the whole peer, `bytes` of shared memory reserved) its weight in this thread's GC. */
export function weighSharedMemory(inSab: SharedArrayBuffer, bytes: number): void {
  if (weights.has(inSab)) return;
  try {
    const weight = bytes < PEER_WEIGHT_BYTES ? bytes : PEER_WEIGHT_BYTES;
    weights.set(inSab, new ArrayBuffer(weight, { maxByteLength: weight }));
  } catch {
    // Out of address space: the peer works the same; only its memory may come back later.
  }
}
