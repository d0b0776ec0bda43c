/*
 * shared/ring.ts: single-thread unit tests, an in-process fuzz of ByteRingReader over
 * hostile memory, and cross-thread stress with real workers (test/fixtures/ring-*.ts) where
 * both sides check every byte, apply backpressure, fall asleep and wake each other.
 *
 * Seeds are fixed so a failure reproduces; RING_TEST_SEED=<n> runs other ones.
 */
import test, { type ExecutionContext } from 'ava';
import { Worker } from 'node:worker_threads';
import {
  ByteRingReader, ByteRingWriter, RING_CORRUPT, RING_EMPTY, SlotRingReader, SlotRingWriter,
} from '../shared/ring.js';
import {
  OP_PAD, RECORD_HEADER_BYTES, RECORD_WRAP, RING_CONSUMER_SLEEPING, RING_HEAD, RING_HEADER_BYTES, RING_PRODUCER_SLEEPING,
  RING_TAIL,
} from '../shared/layout.js';
import {
  BytePlan, CTL_ABORT, CTL_GO, CTL_WORDS, Rng, byteConsumer, EVENT_LOOP, checkBody, fillBody, recordKey,
  type SideStats, type StressParams,
} from './fixtures/ring-common.js';

const SEED = Number(process.env.RING_TEST_SEED ?? 20261127) >>> 0;

// ---- memory with guard bytes around the ring -------------------------------------------------

const PAD = 136; // guard bytes before the header (8-aligned, not 64-aligned on purpose) and after the data
const HEADER_WORD_BYTES = [RING_HEAD, RING_TAIL, RING_CONSUMER_SLEEPING, RING_PRODUCER_SLEEPING].map((i) => i * 4);

function guardByte(i: number): number {
  return (i * 131 + 7) & 0xff;
}

interface RingMemory {
  sab: SharedArrayBuffer;
  byteOffset: number;
  ctl: Int32Array;
  /** Null when nothing outside the ring's four header words and its data bytes changed. */
  guardDamage(): string | null;
}

function ringMemory(dataBytes: number, start: number): RingMemory {
  const sab = new SharedArrayBuffer(PAD + RING_HEADER_BYTES + dataBytes + PAD);
  const u8 = new Uint8Array(sab);
  for (let i = 0; i < u8.length; i++) u8[i] = guardByte(i); // also garbage in the data region
  const ctl = new Int32Array(sab, PAD, RING_HEADER_BYTES / 4);
  ctl[RING_HEAD] = start | 0;
  ctl[RING_TAIL] = start | 0;
  ctl[RING_CONSUMER_SLEEPING] = 0;
  ctl[RING_PRODUCER_SLEEPING] = 0;
  const dataEnd = PAD + RING_HEADER_BYTES + dataBytes;
  return {
    sab, byteOffset: PAD, ctl,
    guardDamage() {
      for (let i = 0; i < u8.length; i++) {
        const inHeader = i >= PAD && i < PAD + RING_HEADER_BYTES;
        const inData = i >= PAD + RING_HEADER_BYTES && i < dataEnd;
        if (inData) continue;
        if (inHeader && HEADER_WORD_BYTES.some((b) => i - PAD >= b && i - PAD < b + 4)) continue;
        if (u8[i] !== guardByte(i)) return `byte ${i} outside the ring changed`;
      }
      return null;
    },
  };
}

// ---- worker plumbing ------------------------------------------------------------------------

interface Spawned {
  ready: Promise<void>;
  result: Promise<SideStats>;
}

function spawn(t: ExecutionContext, file: string, workerData: StressParams): Spawned {
  const worker = new Worker(new URL(`./fixtures/${file}`, import.meta.url), { workerData });
  t.teardown(() => worker.terminate());
  let resolveReady!: () => void;
  let resolveResult!: (s: SideStats) => void;
  let reject!: (e: Error) => void;
  let rejectReady!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => { resolveReady = res; rejectReady = rej; });
  const result = new Promise<SideStats>((res, rej) => { resolveResult = res; reject = rej; });
  ready.catch(() => {});
  result.catch(() => {});
  worker.on('message', (m: { type: string; stats?: SideStats | null; error?: string }) => {
    if (m.type === 'ready') resolveReady();
    else if (m.type === 'result') {
      if (m.stats) resolveResult(m.stats);
      else reject(new Error(`${file}: ${m.error ?? 'gave up before starting'}`));
    }
  });
  const fail = (e: Error): void => { rejectReady(e); reject(e); };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`${file} exited (code ${code}) before it reported`)));
  return { ready, result };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, rej) => {
    timer = setTimeout(() => {
      onTimeout?.();
      rej(new Error(`${what}: nothing within ${ms} ms`));
    }, ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

interface StressSide {
  batchMax?: number;
  pauses?: number;
  async?: boolean;
  notify?: boolean;
}

interface StressSpec {
  kind: 'byte' | 'slot';
  capacity: number;
  slotBytes?: number;
  count: number;
  start?: number;
  largeMax?: number;
  maxBodyPercent?: number;
  waitTimeoutMs?: number;
  maxTimedOut?: number;
  seed?: number;
  producer?: StressSide;
  consumer?: StressSide;
  /** Run the consumer on this (the test's) event loop with byteConsumer(EVENT_LOOP). */
  consumerOnMain?: boolean;
}

interface StressRun {
  prod: SideStats;
  cons: SideStats;
  mem: RingMemory;
  p: StressParams;
}

async function runStress(t: ExecutionContext, spec: StressSpec): Promise<StressRun> {
  const slotBytes = spec.slotBytes ?? 0;
  const dataBytes = spec.kind === 'byte' ? spec.capacity : spec.capacity * slotBytes;
  const start = (spec.start ?? 0) >>> 0;
  const mem = ringMemory(dataBytes, start);
  const ctlSab = new SharedArrayBuffer(CTL_WORDS * 4);
  const ctl = new Int32Array(ctlSab);
  const base: StressParams = {
    kind: spec.kind, sab: mem.sab, byteOffset: mem.byteOffset, capacity: spec.capacity, slotBytes, ctl: ctlSab,
    seed: (spec.seed ?? SEED) >>> 0, count: spec.count, start, largeMax: spec.largeMax ?? 4096,
    maxBodyPercent: spec.maxBodyPercent ?? 4, batchMax: 1, pauses: 0, pauseMs: [5, 20], notify: true, async: false,
    waitTimeoutMs: spec.waitTimeoutMs ?? 1000, maxTimedOut: spec.maxTimedOut ?? 2, deadlineMs: 60_000,
  };
  const pp = { ...base, ...spec.producer };
  const cp = { ...base, ...spec.consumer };
  const producer = spawn(t, 'ring-producer.js', pp);
  const consumer = spec.consumerOnMain ? null : spawn(t, 'ring-consumer.js', cp);
  const abort = (): void => { Atomics.store(ctl, CTL_ABORT, 1); };
  await withTimeout(Promise.all([producer.ready, consumer?.ready]), 30_000, 'workers starting', abort);
  Atomics.store(ctl, CTL_GO, 1);
  Atomics.notify(ctl, CTL_GO);
  const consResult = spec.consumerOnMain ? byteConsumer(cp, EVENT_LOOP) : consumer!.result;
  const [prod, cons] = await withTimeout(Promise.all([producer.result, consResult]), 90_000, 'stress run', abort);
  return { prod, cons, mem, p: base };
}

/** Everything arrived intact, nobody slept through a wake-up, and both sides really slept. */
function assertHealthy(t: ExecutionContext, run: StressRun, expectSleeps: { producer: boolean; consumer: boolean }): void {
  const { prod, cons, mem, p } = run;
  t.deepEqual(prod.errors, [], 'producer errors');
  t.deepEqual(cons.errors, [], 'consumer errors');
  t.is(prod.done, p.count, 'records written');
  t.is(cons.done, p.count, 'records read and checked');
  t.is(prod.endPosition, cons.endPosition, 'both sides end at the same position');
  t.is(mem.ctl[RING_HEAD] >>> 0, prod.endPosition, 'published head');
  t.is(mem.ctl[RING_TAIL] >>> 0, cons.endPosition, 'released tail');
  // A lost wake-up shows as a wait that runs into its (1 s) timeout although the other side
  // moved long before: pauses are at most 20 ms.
  t.is(prod.waits.timedOut, 0, 'producer waits that ran into their timeout');
  t.is(cons.waits.timedOut, 0, 'consumer waits that ran into their timeout');
  if (expectSleeps.consumer) {
    t.true(cons.waits.ok > 0, 'the consumer fell asleep and was woken by a notify');
    t.true(prod.wakesSent > 0, 'commit() reported a sleeping consumer');
  }
  if (expectSleeps.producer) {
    t.true(prod.full > 0, 'the ring was full');
    t.true(prod.waits.ok > 0, 'the producer fell asleep and was woken by a notify');
    t.true(cons.wakesSent > 0, 'release() reported a sleeping producer');
  }
  t.is(Atomics.load(mem.ctl, RING_CONSUMER_SLEEPING), 0, 'consumer-sleeping flag cleared');
  t.is(Atomics.load(mem.ctl, RING_PRODUCER_SLEEPING), 0, 'producer-sleeping flag cleared');
  if (p.kind === 'byte') {
    t.true(cons.wraps > 0, 'records forced wrap markers');
    t.true(cons.exactFills > 0, 'records ended exactly at the end of the ring');
  }
  t.is(mem.guardDamage(), null);
  t.log(`producer: ${fmt(prod)}`);
  t.log(`consumer: ${fmt(cons)}`);
}

function fmt(s: SideStats): string {
  return `${s.done} records, ${s.publishes} publishes, ${s.wakesSent} wakes sent, waits ok/not-equal/timed-out `
    + `${s.waits.ok}/${s.waits.notEqual}/${s.waits.timedOut}, ${s.pauses} pauses, full ${s.full}, empty ${s.empty}`
    + (s.wraps || s.exactFills ? `, ${s.wraps} wraps, ${s.exactFills} exact fills` : '');
}

// =============================================================================================
// Single-thread unit tests

test('ring capacities must be powers of two within bounds', (t) => {
  const sab = new SharedArrayBuffer(RING_HEADER_BYTES + 4096);
  for (const bad of [0, 8, 32, 63, 96, 100, 65.5, -64, NaN, Infinity, 2 ** 31]) {
    t.throws(() => new ByteRingWriter(sab, 0, bad), { instanceOf: RangeError }, `writer capacity ${bad}`);
    t.throws(() => new ByteRingReader(sab, 0, bad), { instanceOf: RangeError }, `reader capacity ${bad}`);
  }
  for (const ok of [64, 128, 4096]) {
    t.is(new ByteRingWriter(sab, 0, ok).capacity, ok);
    t.is(new ByteRingReader(sab, 0, ok).capacity, ok);
  }
  for (const bad of [0, 3, 6, 1.5, -2, NaN, 2 ** 31]) {
    t.throws(() => new SlotRingWriter(sab, 0, bad, 32), { instanceOf: RangeError }, `slot writer ${bad}`);
    t.throws(() => new SlotRingReader(sab, 0, bad, 32), { instanceOf: RangeError }, `slot reader ${bad}`);
  }
  for (const ok of [1, 2, 64]) t.is(new SlotRingWriter(sab, 0, ok, 32).slots, ok);
});

/**
 * One thread drives a writer and a reader over random reserve/commit/read/consume/release
 * steps and checks each against a model: reserve() returns -1 exactly when the record (plus
 * the skipped tail of the ring, if it must wrap) does not fit in front of the released tail;
 * a record too large to follow a wrap marker from where the ring is gets a padding record
 * (OP_PAD, to the end of the ring) published at once, with what was reserved before it,
 * when the pad fits; read() returns exactly the committed records in order with every
 * byte intact.
 */
function modelRun(cap: number, start: number, seed: number, steps: number): string[] {
  const errors: string[] = [];
  const mem = ringMemory(cap, start);
  const w = new ByteRingWriter(mem.sab, mem.byteOffset, cap);
  const r = new ByteRingReader(mem.sab, mem.byteOffset, cap);
  const rng = new Rng(seed);
  const maxBody = w.maxBody;
  let head = start >>> 0;
  let released = start >>> 0;
  let consumed = start >>> 0;
  let n = 0;
  const pending: { key: number; body: number; op: number; offset: number; end: number }[] = [];
  const committed: typeof pending = [];
  let fullSeen = 0;
  let wrapsSeen = 0;
  let padsSeen = 0;
  for (let s = 0; s < steps && errors.length < 5; s++) {
    const step = rng.int(0, 11);
    if (step <= 4) {
      const k = rng.int(0, 9);
      const body = k < 4 ? rng.int(0, 24) : k < 7 ? rng.int(0, 200) : k < 9 ? rng.int(0, maxBody) : maxBody;
      const op = rng.next() | 0;
      const size = RECORD_HEADER_BYTES + ((body + 7) & ~7);
      let pos = head & (cap - 1);
      let toEnd = cap - pos;
      if (size <= cap && size > toEnd && toEnd + size > cap && cap - ((head - released) >>> 0) >= toEnd) {
        // The writer pads to the end and publishes the pad (and what was pending) at once.
        head = (head + toEnd) >>> 0;
        committed.push(...pending.splice(0), { key: -1, body: toEnd - RECORD_HEADER_BYTES, op: OP_PAD, offset: pos + RECORD_HEADER_BYTES, end: head });
        padsSeen++;
        pos = 0;
        toEnd = cap;
      }
      const need = size <= toEnd ? size : toEnd + size;
      const free = cap - ((head - released) >>> 0);
      const at = w.reserve(body, op);
      if ((at === -1) !== (need > free)) {
        errors.push(`step ${s}: reserve(${body}) = ${at} with ${free} free bytes, ${need} needed at position ${pos}`);
        break;
      }
      if (at === -1) { fullSeen++; continue; }
      const offset = size <= toEnd ? pos + RECORD_HEADER_BYTES : RECORD_HEADER_BYTES;
      if (size > toEnd) wrapsSeen++;
      if (at !== offset) { errors.push(`step ${s}: reserve offset ${at}, expected ${offset}`); break; }
      const key = recordKey(seed, n++);
      fillBody(w.u8, w.i32, at, body, key);
      head = (head + need) >>> 0;
      pending.push({ key, body, op, offset, end: head });
    } else if (step === 5) {
      if (w.commit()) errors.push(`step ${s}: commit() says the consumer sleeps`);
      committed.push(...pending.splice(0));
    } else if (step <= 9) {
      const at = r.read();
      const next = committed[0];
      if (!next) {
        if (at !== RING_EMPTY) errors.push(`step ${s}: read() = ${at} with nothing committed`);
        if (r.hasData() !== false) errors.push(`step ${s}: hasData() with nothing committed`);
        continue;
      }
      if (at !== next.offset || r.bodyBytes !== next.body || r.op !== next.op) {
        errors.push(`step ${s}: read() = ${at}/${r.bodyBytes}/${r.op}, expected ${next.offset}/${next.body}/${next.op}`);
        break;
      }
      const bad = next.op === OP_PAD ? -1 : checkBody(r.u8, r.i32, at, next.body, next.key);
      if (bad >= 0) { errors.push(`step ${s}: body byte ${bad} overwritten`); break; }
      if (rng.int(0, 3) !== 0) {
        r.consume();
        committed.shift();
        consumed = next.end;
        if (r.tailPosition !== consumed) errors.push(`step ${s}: tail ${r.tailPosition}, expected ${consumed}`);
      }
    } else {
      if (r.release()) errors.push(`step ${s}: release() says the producer sleeps`);
      released = consumed;
      if ((Atomics.load(mem.ctl, RING_TAIL) >>> 0) !== released) errors.push(`step ${s}: tail not published`);
    }
  }
  if (fullSeen === 0) errors.push('the ring was never full');
  if (wrapsSeen === 0) errors.push('no record ever wrapped');
  if (padsSeen === 0) errors.push('no record was ever padded');
  const damage = mem.guardDamage();
  if (damage) errors.push(damage);
  return errors;
}

test('ByteRing reserve returns -1 exactly when the record does not fit, and reads back what was committed', (t) => {
  for (const cap of [64, 256, 4096]) {
    for (const start of [0, 2 ** 31 - 4 * cap - 8, 2 ** 32 - 3 * cap - 40, 2 ** 32 - 16]) {
      t.deepEqual(modelRun(cap, start, SEED ^ cap ^ start, 20_000), [], `capacity ${cap}, counters from ${start}`);
    }
  }
});

test('ByteRing records of up to the whole ring fit an empty ring at every position, after a padding record the reader hands over', (t) => {
  for (const cap of [64, 128, 4096]) {
    const maxBody = cap - RECORD_HEADER_BYTES;
    for (const body of [maxBody, cap / 2, cap / 2 - RECORD_HEADER_BYTES, 8]) {
      for (let pos = 0; pos < cap; pos += 8) {
        const start = (2 ** 32 - cap + pos) >>> 0; // also crosses the 2^32 wrap of the counters
        const mem = ringMemory(cap, start);
        const w = new ByteRingWriter(mem.sab, mem.byteOffset, cap);
        const r = new ByteRingReader(mem.sab, mem.byteOffset, cap);
        let padsPublished = 0;
        w.onPadPublished = () => padsPublished++;
        t.is(w.maxBody, maxBody);
        const size = RECORD_HEADER_BYTES + body;
        const toEnd = cap - pos;
        const padded = size > toEnd && toEnd + size > cap;
        let at = w.reserve(body, 7);
        if (padded) {
          // The pad fills the ring to its end and is already published; the record needs the space it holds.
          if (at !== -1 || padsPublished !== 1) { t.fail(`cap ${cap} pos ${pos} body ${body}: reserve ${at}, pads ${padsPublished}`); continue; }
          const p = r.read();
          if (p !== pos + RECORD_HEADER_BYTES || r.op !== OP_PAD || r.bodyBytes !== toEnd - RECORD_HEADER_BYTES) {
            t.fail(`cap ${cap} pos ${pos} body ${body}: read ${p} op ${r.op} bytes ${r.bodyBytes}, expected the pad`);
            continue;
          }
          r.consume();
          r.release();
          at = w.reserve(body, 7);
          if (at !== RECORD_HEADER_BYTES) { t.fail(`cap ${cap} pos ${pos} body ${body}: after the pad, reserve gave ${at}`); continue; }
        } else if (at < 0 || padsPublished !== 0) {
          t.fail(`cap ${cap} pos ${pos} body ${body}: did not fit an empty ring (reserve ${at}, pads ${padsPublished})`);
          continue;
        }
        fillBody(w.u8, w.i32, at, body, 42);
        w.commit();
        const got = r.read();
        if (got !== at || r.bodyBytes !== body || r.op !== 7 || checkBody(r.u8, r.i32, got, body, 42) >= 0) {
          t.fail(`capacity ${cap} position ${pos} body ${body}: read ${got}/${r.bodyBytes}/${r.op}, wrote ${at}`);
        }
        r.consume();
        r.release();
        t.is(r.read(), RING_EMPTY);
        t.is(mem.guardDamage(), null);
      }
    }
    // Nothing larger than maxBody ever fits, and trying publishes nothing.
    const mem = ringMemory(cap, cap / 2);
    const w = new ByteRingWriter(mem.sab, mem.byteOffset, cap);
    t.is(w.reserve(maxBody + 1, 1), -1, `capacity ${cap}: maxBody + 1`);
    t.is(Atomics.load(mem.ctl, RING_HEAD), cap / 2, `capacity ${cap}: maxBody + 1 published nothing`);
  }
});

test('ByteRing reserve returns -1 when records fill the ring to the last byte, and space comes back on release', (t) => {
  for (const cap of [64, 4096]) {
    const mem = ringMemory(cap, 0);
    const w = new ByteRingWriter(mem.sab, mem.byteOffset, cap);
    const r = new ByteRingReader(mem.sab, mem.byteOffset, cap);
    const half = cap / 2 - RECORD_HEADER_BYTES;
    // Two records of half the ring each: exactly the whole ring, no wrap marker.
    t.is(w.reserve(half, 1), RECORD_HEADER_BYTES);
    t.is(w.reserve(half, 2), cap / 2 + RECORD_HEADER_BYTES);
    t.is(w.reserve(0, 3), -1, 'an empty record does not fit a full ring');
    w.commit();
    t.is(w.pendingBytes(), cap);
    t.is(r.used(), cap, 'used() after release: published and unreleased bytes');
    t.is(r.read(), RECORD_HEADER_BYTES);
    r.consume();
    t.is(w.reserve(0, 3), -1, 'consumed but unreleased space stays taken');
    r.release();
    t.is(r.used(), cap / 2);
    t.is(w.reserve(half, 3), RECORD_HEADER_BYTES, 'released space is reused from offset 0');
    t.is(w.reserve(0, 4), -1);
    w.commit();
    t.is(r.read(), cap / 2 + RECORD_HEADER_BYTES);
    t.is(r.op, 2);
    r.consume();
    t.is(r.read(), RECORD_HEADER_BYTES);
    t.is(r.op, 3);
    r.consume();
    t.is(r.read(), RING_EMPTY);
    // Fill with 8-byte records (header only) from the middle: cap / 8 of them fit, the next does not.
    r.release();
    for (let i = 0; i < cap / 8; i++) if (w.reserve(0, i) < 0) t.fail(`empty record ${i} did not fit`);
    t.is(w.reserve(0, 99), -1);
    w.commit();
    let atEnd = 0;
    for (let i = 0; i < cap / 8; i++) {
      const at = r.read();
      const expected = ((cap / 2 + 8 * i) & (cap - 1)) + RECORD_HEADER_BYTES;
      if (at !== expected || r.op !== i || r.bodyBytes !== 0) t.fail(`empty record ${i}: ${at}/${r.op}, expected ${expected}`);
      // The record in the last 8 bytes has its (empty) body at offset === capacity.
      if (at === cap) atEnd++;
      r.consume();
    }
    t.is(atEnd, 1);
    t.is(r.read(), RING_EMPTY);
    t.is(mem.guardDamage(), null);
  }
});

test('commit() and release() return true exactly when the other side has set its sleeping flag', (t) => {
  const mem = ringMemory(256, 0);
  const w = new ByteRingWriter(mem.sab, mem.byteOffset, 256);
  const r = new ByteRingReader(mem.sab, mem.byteOffset, 256);
  w.reserve(8, 1);
  t.false(w.commit());
  Atomics.store(mem.ctl, RING_CONSUMER_SLEEPING, 1);
  t.true(w.commit());
  t.false(r.release(), 'the consumer flag does not make release() report');
  Atomics.store(mem.ctl, RING_PRODUCER_SLEEPING, 1);
  t.true(r.release());
  Atomics.store(mem.ctl, RING_CONSUMER_SLEEPING, 0);
  t.false(w.commit(), 'the producer flag does not make commit() report');
  const smem = ringMemory(4 * 32, 0);
  const sw = new SlotRingWriter(smem.sab, smem.byteOffset, 4, 32);
  const sr = new SlotRingReader(smem.sab, smem.byteOffset, 4, 32);
  t.false(sw.commit());
  t.false(sr.release());
  Atomics.store(smem.ctl, RING_CONSUMER_SLEEPING, 1);
  t.true(sw.commit());
  t.false(sr.release());
  Atomics.store(smem.ctl, RING_PRODUCER_SLEEPING, 1);
  t.true(sr.release());
});

test('SlotRing reserve returns -1 exactly when all slots are unreleased, across the 2^32 counter wrap', (t) => {
  for (const [slots, slotBytes] of [[1, 32], [4, 32], [16, 64]] as const) {
    const start = (2 ** 32 - slots - 2) >>> 0;
    const mem = ringMemory(slots * slotBytes, start);
    const w = new SlotRingWriter(mem.sab, mem.byteOffset, slots, slotBytes);
    const r = new SlotRingReader(mem.sab, mem.byteOffset, slots, slotBytes);
    const words = slotBytes / 4;
    let written = 0;
    let read = 0;
    let committed = 0;
    for (let round = 0; round < 3 * slots + 5; round++) {
      // fill completely
      while (true) {
        const free = w.free();
        const at = w.reserve();
        if (at === -1) { t.is(free, 0, 'reserve() failed with free slots'); break; }
        t.true(free > 0, 'reserve() succeeded on a full ring');
        t.is(at, w.slotIndex((start + written) >>> 0));
        for (let k = 0; k < words; k++) w.i32[at + k] = recordKey(SEED, written) + k;
        written++;
      }
      t.is(written - read, slots);
      if (read === committed) t.is(r.read(), RING_EMPTY, 'nothing visible before commit()');
      w.commit();
      committed = written;
      // drain a random number, release, check reserve becomes possible again
      const take = 1 + (round % slots);
      for (let i = 0; i < take; i++) {
        const at = r.read();
        t.is(at, w.slotIndex((start + read) >>> 0));
        for (let k = 0; k < words; k++) if (r.i32[at + k] !== ((recordKey(SEED, read) + k) | 0)) t.fail(`slot ${read} word ${k}`);
        r.consume();
        read++;
      }
      t.is(w.reserve(), -1, 'consumed but unreleased slots stay taken');
      r.release();
      t.is(w.free(), take);
    }
    t.is(mem.guardDamage(), null);
  }
});

// =============================================================================================
// Untrusted producer: ByteRingReader over hostile memory

interface Hostile {
  mem: RingMemory;
  cap: number;
  u8: Uint8Array;
  i32: Int32Array;
}

function hostile(cap: number, tail: number): Hostile {
  const mem = ringMemory(cap, tail);
  return {
    mem, cap,
    u8: new Uint8Array(mem.sab, mem.byteOffset + RING_HEADER_BYTES, cap),
    i32: new Int32Array(mem.sab, mem.byteOffset + RING_HEADER_BYTES, cap / 4),
  };
}

test('ByteRingReader reports RING_CORRUPT for each kind of impossible producer state', (t) => {
  const cap = 256;
  const tail = (2 ** 32 - 64) >>> 0; // position 192; the counters wrap during the cases
  const pos = tail & (cap - 1);
  const cases: [string, (h: Hostile) => void, number][] = [
    ['head == tail', () => {}, RING_EMPTY],
    ['valid 16-byte record', (h) => { h.i32[pos >> 2] = 5; h.i32[(pos >> 2) + 1] = 3; setHead(h, tail + 16); }, pos + 8],
    ['head not a multiple of 8', (h) => { h.i32[pos >> 2] = 0; setHead(h, tail + 4); }, RING_CORRUPT],
    ['head 8k + 3 past a valid record', (h) => { h.i32[pos >> 2] = 0; setHead(h, tail + 8 + 3); }, RING_CORRUPT],
    ['head more than capacity ahead', (h) => { h.i32[pos >> 2] = 0; setHead(h, tail + cap + 8); }, RING_CORRUPT],
    ['head behind tail', (h) => { h.i32[pos >> 2] = 0; setHead(h, tail - 8); }, RING_CORRUPT],
    ['head = tail + 2^31', (h) => { h.i32[pos >> 2] = 0; setHead(h, tail + 2 ** 31); }, RING_CORRUPT],
    ['length larger than the ring', (h) => { h.i32[pos >> 2] = cap + 1; setHead(h, tail + 64); }, RING_CORRUPT],
    ['length 0x7fffffff', (h) => { h.i32[pos >> 2] = 0x7fffffff; setHead(h, tail + 64); }, RING_CORRUPT],
    ['length 0xfffffff8 (size overflows to 0)', (h) => { h.i32[pos >> 2] = 0xfffffff8 | 0; setHead(h, tail + 64); }, RING_CORRUPT],
    ['length beyond what head published', (h) => { h.i32[pos >> 2] = 9; setHead(h, tail + 16); }, RING_CORRUPT],
    ['record straddling the end of the ring', (h) => { h.i32[pos >> 2] = 64; setHead(h, tail + 128); }, RING_CORRUPT],
    ['wrap marker with nothing after it', (h) => { h.i32[pos >> 2] = RECORD_WRAP | 0; setHead(h, tail + (cap - pos)); }, RING_CORRUPT],
    ['wrap marker with a record too large for the rest', (h) => {
      h.i32[pos >> 2] = RECORD_WRAP | 0; h.i32[0] = 16; setHead(h, tail + (cap - pos) + 16);
    }, RING_CORRUPT],
    ['wrap marker followed by another wrap marker', (h) => {
      h.i32[pos >> 2] = RECORD_WRAP | 0; h.i32[0] = RECORD_WRAP | 0; setHead(h, tail + (cap - pos) + 64);
    }, RING_CORRUPT],
    ['valid wrap marker then record', (h) => {
      h.i32[pos >> 2] = RECORD_WRAP | 0; h.i32[0] = 16; h.i32[1] = -5; setHead(h, tail + (cap - pos) + 24);
    }, RECORD_HEADER_BYTES],
  ];
  for (const [name, setup, expected] of cases) {
    const h = hostile(cap, tail);
    setup(h);
    const r = new ByteRingReader(h.mem.sab, h.mem.byteOffset, cap);
    let got: number | string;
    try { got = r.read(); } catch (e) { got = `threw ${String(e)}`; }
    t.is(got, expected, name);
    if (expected === RING_CORRUPT) {
      t.is(r.read(), RING_CORRUPT, `${name}: stays corrupt`);
      t.is(r.tailPosition, tail, `${name}: the tail did not move`);
    }
  }
  // A wrap marker at position 0 would skip the whole ring: nothing can follow it.
  const h = hostile(cap, 0);
  h.i32[0] = RECORD_WRAP | 0;
  setHead(h, cap);
  t.is(new ByteRingReader(h.mem.sab, h.mem.byteOffset, cap).read(), RING_CORRUPT, 'wrap marker at position 0');
});

function setHead(h: Hostile, head: number): void {
  Atomics.store(h.mem.ctl, RING_HEAD, head | 0);
}

/**
 * What read() must return, from the format alone: the offset of a record that is entirely
 * published and inside the ring, RING_EMPTY, or RING_CORRUPT.
 */
function referenceRead(h: Hostile, tail: number, head: number): { at: number; len: number; op: number; next: number } {
  const cap = h.cap;
  const avail = (head - tail) >>> 0;
  if (avail === 0) return { at: RING_EMPTY, len: 0, op: 0, next: tail };
  if (avail > cap || avail % 8 !== 0) return { at: RING_CORRUPT, len: 0, op: 0, next: tail };
  let pos = tail % cap;
  let room = avail;
  let len = h.i32[pos / 4] >>> 0;
  if (len === RECORD_WRAP) {
    if (cap - pos >= avail) return { at: RING_CORRUPT, len: 0, op: 0, next: tail };
    room -= cap - pos;
    pos = 0;
    len = h.i32[0] >>> 0;
  }
  const size = 8 + Math.ceil(len / 8) * 8;
  if (size > room || pos + size > cap) return { at: RING_CORRUPT, len: 0, op: 0, next: tail };
  return { at: pos + 8, len, op: h.i32[pos / 4 + 1], next: (tail + (avail - room) + size) >>> 0 };
}

test('ByteRingReader never throws or leaves the ring on thousands of random hostile states', (t) => {
  const rng = new Rng(SEED ^ 0xbad);
  const problems: string[] = [];
  const outcomes = { corrupt: 0, empty: 0, record: 0, wrapped: 0, consumed: 0 };
  const STATES = 12_000;
  for (let s = 0; s < STATES && problems.length < 5; s++) {
    const cap = [64, 128, 256, 1024][rng.int(0, 3)];
    const tail0 = rng.int(0, 3) === 0 ? (2 ** 32 - rng.int(0, 4) * cap - 8 * rng.int(0, cap / 8)) >>> 0 : (rng.next() & ~7) >>> 0;
    const h = hostile(cap, tail0);
    for (let i = 0; i < cap; i++) h.u8[i] = rng.next() & 0xff; // garbage everywhere
    const r = new ByteRingReader(h.mem.sab, h.mem.byteOffset, cap);
    let tail = tail0;
    let headSeen = tail0; // the head the reader works from (it reloads only when it has nothing left)
    const steps = rng.int(1, 12);
    for (let k = 0; k < steps; k++) {
      const pos = tail & (cap - 1);
      const mode = rng.int(0, 9);
      let head: number;
      switch (mode) {
        case 0: head = rng.next(); break;                                             // anything
        case 1: head = tail + rng.int(0, 2 * cap); break;                             // often unaligned
        case 2: head = tail + cap + 8 * rng.int(1, 64); break;                        // too far ahead
        case 3: head = tail - 8 * rng.int(1, 64); break;                              // behind
        case 4: {                                                                      // a plausible or silly length
          const lens = [rng.next(), cap, cap + 1, cap - 8, cap - pos, cap - pos - 8, 0, rng.int(0, cap), 0x7ffffff8, 0xfffffff8];
          h.i32[pos >> 2] = lens[rng.int(0, lens.length - 1)] | 0;
          head = tail + 8 * rng.int(0, cap / 8 + 2);
          break;
        }
        case 5: {                                                                      // wrap marker, maybe nothing after
          h.i32[pos >> 2] = RECORD_WRAP | 0;
          head = tail + (cap - pos) + 8 * rng.int(-1, 3);
          break;
        }
        case 6: {                                                                      // wrap marker, then a length at 0
          h.i32[pos >> 2] = RECORD_WRAP | 0;
          h.i32[0] = [rng.next(), RECORD_WRAP, 0, rng.int(0, cap), cap - 8, cap][rng.int(0, 5)] | 0;
          head = tail + (cap - pos) + 8 * rng.int(0, cap / 8);
          break;
        }
        case 7: {                                                                      // a valid record
          const len = rng.int(0, Math.min(cap - pos, cap / 2) - 8);
          h.i32[pos >> 2] = len;
          h.i32[(pos >> 2) + 1] = rng.next() | 0;
          head = tail + 8 + ((len + 7) & ~7) + 8 * rng.int(0, 2);
          break;
        }
        default: {                                                                     // scribble, keep head
          for (let i = 0; i < 16; i++) h.u8[rng.int(0, cap - 1)] = rng.next() & 0xff;
          head = Atomics.load(h.mem.ctl, RING_HEAD);
        }
      }
      head >>>= 0;
      setHead(h, head);
      if (headSeen === tail) headSeen = head;
      const want = referenceRead(h, tail, headSeen);
      let at: number;
      try {
        at = r.read();
      } catch (e) {
        problems.push(`state ${s} step ${k}: read() threw ${String(e)}`);
        break;
      }
      const where = `state ${s} step ${k} (cap ${cap}, tail ${tail}, head ${headSeen}, mode ${mode})`;
      if (!Number.isInteger(at)) { problems.push(`${where}: read() returned ${at}`); break; }
      if (at >= 0) {
        if (at > cap || (at === cap && r.bodyBytes !== 0) || at % 8 !== 0) problems.push(`${where}: offset ${at}`);
        if (at + r.bodyBytes > cap) problems.push(`${where}: body ${at}+${r.bodyBytes} runs past the ring`);
      } else if (at !== RING_EMPTY && at !== RING_CORRUPT) {
        problems.push(`${where}: read() returned ${at}`);
      }
      if (at !== want.at || (at >= 0 && (r.bodyBytes !== want.len || r.op !== want.op))) {
        problems.push(`${where}: read() = ${at}/${r.bodyBytes}/${r.op}, the format says ${want.at}/${want.len}/${want.op}`);
      }
      if (problems.length > 0) break;
      if (at === RING_CORRUPT) { outcomes.corrupt++; continue; }
      if (at === RING_EMPTY) { outcomes.empty++; continue; }
      outcomes.record++;
      if (at === RECORD_HEADER_BYTES && pos !== 0) outcomes.wrapped++;
      if (rng.int(0, 2) !== 0) {
        r.consume();
        outcomes.consumed++;
        if (r.tailPosition !== want.next) { problems.push(`${where}: consume() moved the tail to ${r.tailPosition}, not ${want.next}`); break; }
        if (((headSeen - r.tailPosition) >>> 0) > ((headSeen - tail) >>> 0)) { problems.push(`${where}: consume() passed the head`); break; }
        tail = r.tailPosition;
        if (rng.int(0, 1) === 0) r.release();
      }
    }
    const damage = h.mem.guardDamage();
    if (damage) problems.push(`state ${s}: ${damage}`);
  }
  t.deepEqual(problems, []);
  // The generator must have reached all outcomes, or the test proves little.
  t.true(outcomes.corrupt > 1000, `corrupt ${outcomes.corrupt}`);
  t.true(outcomes.record > 1000, `records ${outcomes.record}`);
  t.true(outcomes.wrapped > 100, `wrapped ${outcomes.wrapped}`);
  t.true(outcomes.empty > 100, `empty ${outcomes.empty}`);
  t.log(outcomes);
});

test('ByteRingReader accepts every valid stream no matter what garbage lies in the unpublished space', (t) => {
  const problems: string[] = [];
  for (const cap of [64, 512, 4096]) {
    const rng = new Rng(SEED ^ cap);
    const start = (2 ** 32 - 5 * cap + 24) >>> 0;
    const mem = ringMemory(cap, start);
    const w = new ByteRingWriter(mem.sab, mem.byteOffset, cap);
    const r = new ByteRingReader(mem.sab, mem.byteOffset, cap);
    const plan = new BytePlan(SEED ^ cap, cap, start, cap, 4);
    const check = new BytePlan(SEED ^ cap, cap, start, cap, 4);
    const u8 = w.u8;
    for (let round = 0; round < 3000 && problems.length === 0; round++) {
      // write a few records, then scribble garbage over all free space before publishing
      const n = rng.int(1, 6);
      let wrote = 0;
      for (let i = 0; i < n; i++) {
        const save = { head: plan.head, seq: plan.seq, wraps: plan.wraps, exactFills: plan.exactFills };
        plan.next();
        const at = w.reserve(plan.bodyBytes, plan.op);
        if (at < 0) { Object.assign(plan, save); break; }
        if (at !== plan.offset) { problems.push(`reserve ${at} != plan ${plan.offset}`); break; }
        fillBody(u8, w.i32, at, plan.bodyBytes, plan.key);
        wrote++;
      }
      const head = plan.head;
      const tail = r.tailPosition;
      for (let b = head; ((b - tail) >>> 0) < cap; b = (b + 1) >>> 0) {
        // free bytes: from the reserved head up to the released tail + capacity
        u8[b & (cap - 1)] = rng.next() & 0xff;
      }
      w.commit();
      const take = rng.int(0, wrote + 2);
      for (let i = 0; i < take; i++) {
        const at = r.read();
        if (at === RING_EMPTY) { if (check.seq !== plan.seq) problems.push(`EMPTY with ${plan.seq - check.seq} records published`); break; }
        check.next();
        if (at !== check.offset || r.bodyBytes !== check.bodyBytes || r.op !== check.op) {
          problems.push(`cap ${cap} record ${check.seq - 1}: ${at}/${r.bodyBytes}/${r.op} vs ${check.offset}/${check.bodyBytes}/${check.op}`);
          break;
        }
        if (checkBody(r.u8, r.i32, at, check.bodyBytes, check.key) >= 0) { problems.push(`cap ${cap} record ${check.seq - 1}: body`); break; }
        r.consume();
      }
      r.release();
    }
    t.true(plan.wraps > 50 && plan.exactFills > 50, `cap ${cap}: ${plan.wraps} wraps, ${plan.exactFills} exact fills`);
  }
  t.deepEqual(problems, []);
});

// =============================================================================================
// Cross-thread stress. Serial: two busy workers per test already fill both cores.

test.serial('ByteRing 4 KiB: per-record commits and releases, both sides sleep and wake, every byte checked', async (t) => {
  const run = await runStress(t, {
    kind: 'byte', capacity: 4096, count: 400_000, start: 2 ** 31 - 3000 * 8, largeMax: 2040,
    producer: { batchMax: 1, pauses: 20 }, consumer: { batchMax: 1, pauses: 20 },
  });
  assertHealthy(t, run, { producer: true, consumer: true });
});

test.serial('ByteRing 64 KiB: batched commits and releases across the 2^32 counter wrap, every byte checked', async (t) => {
  const run = await runStress(t, {
    kind: 'byte', capacity: 65536, count: 600_000, start: 2 ** 32 - 40 * 65536 - 4040, largeMax: 6144, maxBodyPercent: 1,
    producer: { batchMax: 24, pauses: 20 }, consumer: { batchMax: 32, pauses: 20 },
  });
  assertHealthy(t, run, { producer: true, consumer: true });
});

test.serial('ByteRing 64 B: a ring that holds two records at most, mixed batching', async (t) => {
  const run = await runStress(t, {
    kind: 'byte', capacity: 64, count: 150_000, start: 2 ** 32 - 64 * 1000 - 8, largeMax: 24, maxBodyPercent: 4,
    producer: { batchMax: 3, pauses: 10 }, consumer: { batchMax: 2, pauses: 10 },
  });
  assertHealthy(t, run, { producer: true, consumer: true });
});

test.serial('ByteRing async consumer on the test\'s event loop: waitForDataAsync, every byte checked', async (t) => {
  const run = await runStress(t, {
    kind: 'byte', capacity: 4096, count: 250_000, largeMax: 2040, consumerOnMain: true,
    producer: { batchMax: 8, pauses: 15 }, consumer: { batchMax: 4, pauses: 10, async: true },
  });
  assertHealthy(t, run, { producer: true, consumer: true });
});

test.serial('ByteRing async consumer and async producer workers stay alive while they sleep', async (t) => {
  // Neither worker has anything pending but the ring wait while it sleeps, so each would exit
  // (and the test fail with "exited before it reported") unless the async wait keeps it alive.
  const run = await runStress(t, {
    kind: 'byte', capacity: 4096, count: 150_000, largeMax: 2040,
    producer: { batchMax: 4, pauses: 12, async: true }, consumer: { batchMax: 4, pauses: 12, async: true },
  });
  assertHealthy(t, run, { producer: true, consumer: true });
});

test.serial('a producer that never notifies shows up as consumer waits that time out (the detector works)', async (t) => {
  // Self-check of the stress harness. The producer pauses for 5-20 ms, so the consumer falls
  // asleep; with a notify it would wake within those 20 ms, without one it sleeps into its
  // 50 ms timeout. Its timed-out count must be > 0, which assertHealthy() rejects.
  const run = await runStress(t, {
    kind: 'byte', capacity: 4096, count: 200, largeMax: 2040, waitTimeoutMs: 50, maxTimedOut: 1000,
    producer: { batchMax: 1, pauses: 2, notify: false }, consumer: { batchMax: 1 },
  });
  t.deepEqual(run.cons.errors, []);
  t.is(run.cons.done, 200);
  t.true(run.prod.wakesSent > 0, 'commit() saw the consumer asleep');
  t.true(run.cons.waits.timedOut > 0, 'unwoken sleeps ran into their timeout');
});

test.serial('SlotRing 32-byte slots: 16 slots, per-slot commits, both sides sleep and wake, every word checked', async (t) => {
  const run = await runStress(t, {
    kind: 'slot', capacity: 16, slotBytes: 32, count: 400_000, start: 2 ** 32 - 250_000,
    producer: { batchMax: 1, pauses: 20 }, consumer: { batchMax: 1, pauses: 20 },
  });
  assertHealthy(t, run, { producer: true, consumer: true });
});

test.serial('SlotRing 64-byte slots: 64 slots, batched commits and releases, every word checked', async (t) => {
  const run = await runStress(t, {
    kind: 'slot', capacity: 64, slotBytes: 64, count: 400_000, start: 2 ** 31 - 100_000,
    producer: { batchMax: 16, pauses: 20 }, consumer: { batchMax: 24, pauses: 20 },
  });
  assertHealthy(t, run, { producer: true, consumer: true });
});
