/*
 * The weight of a peer's shared memory in the owner thread's garbage collector.
 *
 * A peer's SharedArrayBuffers are freed only when every thread that saw them has
 * collected its last reference to them. The owner thread holds such references through
 * the tickets it mints (and its peer registry, src/peer-registry.ts) and keeps them
 * after the peer is gone until the ticket is garbage and a full collection runs. But V8
 * gives shared memory no weight in its collection heuristics (a shared backing store's
 * per-isolate accounting length is 0, so that a buffer seen by N threads is not counted
 * N times), and the owner thread typically allocates so little that it goes for hours
 * without a full collection: the buffers of peers long gone stay mapped, and RSS grows
 * with every peer that comes and goes (issue 10: about 0.5 MiB per soak client).
 *
 * The cure: the owner thread's garbage collector is made to run a full collection soon
 * after peers die. V8 starts one when about 64 MiB of new external memory has been
 * allocated since the last, so when the owner learns that peers it minted are gone (its
 * registry prunes them, src/peer-registry.ts), the next peer it mints carries a weight
 * of that size: an ordinary buffer that V8 counts as external memory, kept in a WeakMap
 * keyed by that peer's IN buffer, so that it lives and dies with the peer. The
 * collection it starts frees the dead peers' buffers: by then the registry no longer
 * holds them, and the tickets are the user's garbage.
 *
 * Why not weigh every peer as it is minted, by what it reserves: that made every
 * createPeer a full collection (about 390 MiB reserved with the default limits), and
 * minting 2000 idle peers took 8.7 s. Capped at 2 MiB a peer, collections came too rarely
 * for a churning soak to stay flat. Weighing only after deaths costs nothing while no
 * peer dies, and one collection per registry pass that found dead peers.
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

/** What one weight adds to external memory: about what makes V8 start a full collection. */
export const COLLECTION_WEIGHT_BYTES = 64 << 20;

const weights = new WeakMap<SharedArrayBuffer, ArrayBuffer>();

/** Hang a collection's worth of weight on `inSab`, a live peer's IN buffer (see above). */
export function weighForCollection(inSab: SharedArrayBuffer): void {
  if (weights.has(inSab)) return;
  try {
    weights.set(inSab, new ArrayBuffer(COLLECTION_WEIGHT_BYTES, { maxByteLength: COLLECTION_WEIGHT_BYTES }));
  } catch {
    // Out of address space: the peer works the same; only its memory may come back later.
  }
}
