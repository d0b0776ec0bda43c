/*
 * PendingRequests: a peer's requests waiting for their verdicts, in reqId order. Peer
 * thread only; module-private (the request pump, src/peer/acks.ts, holds one).
 *
 * Parallel circular arrays, so that a request costs no object and no array growth:
 * entry n is at n & mask, `head` is the front and `tail` the back, and both only grow.
 * The capacity doubles when full and never shrinks; it starts small, since an idle peer
 * pays for it (1024 entries were about 29 KiB a peer). The fields are public for the
 * pump's settle loop, which reads them into locals; only push() and the pump move them.
 */

export type Resolve = (v: unknown) => void;
export type Reject = (e: unknown) => void;

/** True when request id `a` comes after `b` (u32 ids that wrap). */
export function after(a: number, b: number): boolean {
  const d = (a - b) >>> 0;
  return d !== 0 && d < 0x80000000;
}

/** Slots a peer starts with (a power of two; doubled as needed). */
const PENDING_INITIAL = 16;

export class PendingRequests {
  mask = PENDING_INITIAL - 1;
  reqs = new Uint32Array(PENDING_INITIAL);
  kinds = new Uint8Array(PENDING_INITIAL);
  resolves: Array<Resolve | null> = new Array<Resolve | null>(PENDING_INITIAL).fill(null);
  rejects: Array<Reject | null> = new Array<Reject | null>(PENDING_INITIAL).fill(null);
  extras: unknown[] = new Array<unknown>(PENDING_INITIAL).fill(null);
  head = 0;
  tail = 0;

  push(reqId: number, kind: number, resolve: Resolve | null, reject: Reject | null, extra: unknown): void {
    if (this.tail - this.head > this.mask) this.#grow();
    const t = this.tail++ & this.mask;
    this.reqs[t] = reqId;
    this.kinds[t] = kind;
    this.resolves[t] = resolve;
    this.rejects[t] = reject;
    this.extras[t] = extra;
  }

  /** Forget the functions and extra of the entry at index `h` (it is being settled). */
  clear(h: number): void {
    this.resolves[h] = this.rejects[h] = null;
    this.extras[h] = null;
  }

  /** Double the arrays, keeping the entries in order (the front moves to index 0). */
  #grow(): void {
    const n = this.tail - this.head, cap = 2 * (this.mask + 1);
    const reqs = new Uint32Array(cap), kinds = new Uint8Array(cap);
    const resolves = new Array<Resolve | null>(cap).fill(null), rejects = new Array<Reject | null>(cap).fill(null);
    const extras = new Array<unknown>(cap).fill(null);
    for (let i = 0; i < n; i++) {
      const from = (this.head + i) & this.mask;
      reqs[i] = this.reqs[from];
      kinds[i] = this.kinds[from];
      resolves[i] = this.resolves[from];
      rejects[i] = this.rejects[from];
      extras[i] = this.extras[from];
    }
    this.reqs = reqs; this.kinds = kinds; this.resolves = resolves; this.rejects = rejects; this.extras = extras;
    this.mask = cap - 1;
    this.head = 0;
    this.tail = n;
  }
}
