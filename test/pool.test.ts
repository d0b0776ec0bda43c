/*
 * The receive pool's allocator (src/coordinator/pool.ts) over random sequences of
 * allocations and frees that accounting would admit (never more live messages than the
 * messages limit, never more live bytes than the bytes limit), as the coordinator drives
 * it, with a sink standing in for the peer's port. Checked after every step:
 *   - an admitted allocation always gets a slot (the pool's promise);
 *   - live slices never overlap, in pool addresses or in the bytes of their segment;
 *   - every slice lies inside the segment segmentOf() names, and that segment is the
 *     first one (the tail of the peer's buffer) or one handed to the sink BEFORE the
 *     allocation returned, under the address the slice's granule maps to;
 *   - segments are made only for windows never used before, so the bytes handed over
 *     never exceed the pool's address space, and a freed slot is reused before a new
 *     segment is made (a steady stream makes no segment after its first round);
 *   - alloc() reports where it placed a slot (placedOffset, placedSegment), and a slice
 *     is released (freeReceived) only once, and only after its receipt (receive).
 */

import test from 'ava';
import { testProp, fc } from '@fast-check/ava';
import { Pool, firstSegmentBytes, SLOT_QUEUED, SLOT_RECEIVED, type SegmentSink } from '../src/coordinator/pool.js';
import { SEGMENT_BYTES, SEGMENT_SHIFT } from '../shared/layout.js';

const LIMITS = { messages: 64, bytes: 64 * 1024, largest: 40_000 };
const POOL_OFFSET = 512; // where the first segment starts in the stand-in peer buffer

class Harness implements SegmentSink {
  readonly pool = new Pool(LIMITS.messages, LIMITS.bytes, LIMITS.largest);
  readonly inSab = new SharedArrayBuffer(POOL_OFFSET + firstSegmentBytes(LIMITS.messages));
  /** What the peer would have mapped: granule -> [address, buffer]. */
  readonly mapped = new Map<number, [number, SharedArrayBuffer]>();
  handedBytes = 0;
  handedCount = 0;

  constructor() {
    this.pool.attach(this.inSab, new Int32Array(this.inSab), POOL_OFFSET, this);
  }

  handOver(address: number, sab: SharedArrayBuffer): void {
    if (address % SEGMENT_BYTES !== 0) throw new Error(`segment at ${address} is not granule-aligned`);
    for (let a = address; a < address + sab.byteLength; a += SEGMENT_BYTES) {
      if (this.mapped.has(a >>> SEGMENT_SHIFT)) throw new Error(`granule of ${a} handed over twice`);
      this.mapped.set(a >>> SEGMENT_SHIFT, [address, sab]);
    }
    this.handedBytes += sab.byteLength;
    this.handedCount++;
  }

  /** The buffer and byte range a peer would read for a slice at `address` of `bytes`. */
  peerView(address: number, bytes: number): [SharedArrayBuffer, number] {
    if (address + bytes <= firstSegmentBytes(LIMITS.messages) && address >>> SEGMENT_SHIFT === 0) {
      return [this.inSab, POOL_OFFSET + address];
    }
    const m = this.mapped.get(address >>> SEGMENT_SHIFT);
    if (m === undefined) throw new Error(`slice at ${address} is in no segment handed over`);
    const [base, sab] = m;
    if (address - base + bytes > sab.byteLength) throw new Error(`slice at ${address} (${bytes} B) runs past its segment`);
    return [sab, address - base];
  }
}

interface Live { slot: number; address: number; charge: number; buf: SharedArrayBuffer; at: number }

const op = fc.oneof(
  fc.record({ kind: fc.constant('alloc' as const), charge: fc.integer({ min: 1, max: LIMITS.largest }) }),
  fc.record({ kind: fc.constant('alloc' as const), charge: fc.integer({ min: 1, max: 200 }) }),
  fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
);

testProp('admitted allocations always fit, never overlap, and lie in segments handed over first', [fc.array(op, { maxLength: 300 })], (t, ops) => {
  const h = new Harness();
  const live: Live[] = [];
  let liveBytes = 0;
  for (const o of ops) {
    if (o.kind === 'free') {
      if (live.length === 0) continue;
      const [l] = live.splice(o.pick % live.length, 1);
      // The coordinator's path: receipt (descriptor consumed), then SLICE_RELEASE of the address.
      t.is(h.pool.freeReceived(l.address), -1, 'a slice not yet received cannot be released');
      t.is(h.pool.receive(l.slot), l.charge, 'a receipt returns the charge');
      t.is(h.pool.stateOf(l.slot), SLOT_RECEIVED);
      t.is(h.pool.freeReceived(l.address), l.charge, 'a release returns the charge');
      t.is(h.pool.freeReceived(l.address), -1, 'a second release of the slice names none');
      liveBytes -= l.charge;
      continue;
    }
    // Accounting: only what the limits admit reaches the pool.
    if (live.length >= LIMITS.messages || liveBytes + o.charge > LIMITS.bytes) continue;
    const slot = h.pool.alloc(o.charge);
    if (slot < 0) return t.fail(`alloc(${o.charge}) refused with ${live.length} live messages, ${liveBytes} live bytes`);
    t.is(h.pool.stateOf(slot), SLOT_QUEUED);
    t.is(h.pool.chargedOf(slot), o.charge);
    const address = h.pool.offsetOf(slot);
    t.is(h.pool.placedOffset, address, 'alloc() says where it placed the slot');
    t.is(h.pool.placedSegment, h.pool.segmentOf(slot));
    t.true(address >= 0 && address + o.charge <= h.pool.totalBytes, 'inside the address space');
    t.is(h.pool.slotAt(address), slot, 'a release of that address names that slot');
    const [buf, at] = h.peerView(address, o.charge);
    const seg = h.pool.segmentOf(slot);
    // The coordinator writes where the peer reads.
    t.is(seg.i32.buffer, buf, 'the coordinator writes into the buffer the peer maps');
    t.is(address + seg.delta, at);
    for (const l of live) {
      const apart = address + o.charge <= l.address || l.address + l.charge <= address;
      const bytesApart = buf !== l.buf || at + o.charge <= l.at || l.at + l.charge <= at;
      if (!apart || !bytesApart) return t.fail(`slice at ${address} (${o.charge} B) overlaps one at ${l.address} (${l.charge} B)`);
    }
    live.push({ slot, address, charge: o.charge, buf, at });
    liveBytes += o.charge;
  }
  t.true(h.handedBytes <= h.pool.totalBytes, `${h.handedBytes} bytes of segments for ${h.pool.totalBytes} of address space`);
});

test('a steady stream reuses its slots: no new segment after the first round', (t) => {
  const h = new Harness();
  const round = () => {
    const slots = [1000, 5000, 100, 30_000, 70, 2000].map((c) => h.pool.alloc(c));
    t.false(slots.includes(-1));
    for (const s of slots) {
      h.pool.receive(s);
      t.true(h.pool.freeReceived(h.pool.offsetOf(s)) > 0);
    }
  };
  round();
  const made = h.handedCount;
  t.true(made > 0, 'messages of these sizes need segments beyond the first');
  for (let i = 0; i < 100; i++) round();
  t.is(h.handedCount, made);
});

test('a release of an address no slot starts at, or of a slot never used, names no slot', (t) => {
  const h = new Harness();
  const s = h.pool.alloc(100);
  const a = h.pool.offsetOf(s);
  for (const bad of [a + 8, a + 128, -64, 0.5, h.pool.totalBytes, 2 ** 32, NaN]) t.is(h.pool.slotAt(bad), -1, `address ${bad}`);
  t.is(h.pool.slotAt(a), s);
});
