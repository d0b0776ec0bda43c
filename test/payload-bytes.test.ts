/*
 * Payload bytes arrive bit for bit, whatever their values and sizes: the coordinator
 * copies small payloads (up to WORD_COPY_MAX_BYTES) by 64-bit words and larger ones
 * natively (src/coordinator/transactions.ts, copyPayload), and a receiver reuses a
 * slot's view while the length holds (src/peer/pool-map.ts). Random bytes (NaN bit
 * patterns among them, which a float copy could rewrite) of sizes around every
 * boundary, to one receiver and as multicasts, in batches the coordinator takes at once.
 * The coordinator and its peers run in this thread (perf/in-thread.ts), as in
 * test/runs.test.ts, so that batches are exact.
 */

import test from 'ava';
import fc from 'fast-check';
import { inThreadBus } from '../perf/in-thread.js';

const SIZES = [0, 1, 7, 8, 9, 63, 64, 65, 255, 256, 257, 600, 4096];

test('random payloads of every size arrive bit for bit, unicast and multicast', (t) => {
  const bus = inThreadBus();
  t.teardown(() => bus.coordinator.closeAll());
  const limits = { messages: 1024, bytes: 8 << 20 };
  const sender = bus.open(1, limits);
  const receivers = [bus.open(2, limits), bus.open(3, limits), bus.open(4, limits)];
  const to = receivers.map((r) => bus.handleTo(r.id, sender.id));
  const payload = fc.oneof(
    fc.constantFrom(...SIZES).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
    fc.uint8Array({ maxLength: 300 }),
    // A float64 signaling NaN and other NaNs, repeated: bit patterns a float copy may change.
    fc.constantFrom([0x01, 0, 0, 0, 0, 0, 0xf0, 0x7f], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [1, 0, 0, 0, 0, 0, 0xf8, 0xff])
      .chain((w) => fc.integer({ min: 1, max: 40 }).map((k) => Uint8Array.from({ length: 8 * k }, (_, i) => w[i % 8]!))),
  );
  const batch = fc.array(fc.record({ data: payload, multicast: fc.boolean() }), { minLength: 1, maxLength: 40 });
  fc.assert(fc.property(batch, (sends) => {
    const want: Uint8Array[][] = receivers.map(() => []);
    for (const s of sends) {
      sender.peer.post(s.multicast ? to : to[0]!, s.data);
      for (let r = 0; r < receivers.length; r++) if (s.multicast || r === 0) want[r]!.push(s.data);
    }
    bus.coordinator.runOnce();
    for (let r = 0; r < receivers.length; r++) {
      const got: Uint8Array[] = [];
      for (let m = receivers[r]!.peer.tryRecv(); m !== undefined; m = receivers[r]!.peer.tryRecv()) {
        got.push(Uint8Array.from(m.data));
        m.release();
      }
      t.deepEqual(got.map((g) => Buffer.from(g).toString('hex')), want[r]!.map((w) => Buffer.from(w).toString('hex')), `receiver ${r}`);
      if (got.length !== want[r]!.length) return false;
    }
    // The releases go back before the next batch.
    bus.coordinator.runOnce();
    return true;
  }), { numRuns: 150 });
});
