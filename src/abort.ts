/*
 * AbortSignal and deadline handling shared by the layer's waits (request(), waiting
 * sends). A wait that a signal ends rejects with an AbortError: the signal's reason when
 * it is one (AbortController.abort() makes a DOMException named AbortError), else an
 * AbortError whose `cause` is the reason. A wait that runs out of time rejects with the
 * BusError ETIMEDOUT.
 */

import { BusError } from './errors.js';

export function abortError(signal: AbortSignal, what: string): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const e = new Error(`${what}: aborted`, { cause: reason });
  e.name = 'AbortError';
  return e;
}

export function checkSignal(signal: unknown, what: string): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) throw new BusError('EINVAL', `${what}: opts.signal must be an AbortSignal`);
  return signal;
}

/** A timeout in ms: a non-negative number (Infinity allowed), else EINVAL. */
export function checkMs(ms: unknown, what: string, name: string): number {
  if (typeof ms !== 'number' || Number.isNaN(ms) || ms < 0) {
    throw new BusError('EINVAL', `${what}: ${name} must be a non-negative number of milliseconds, got ${String(ms)}`);
  }
  return ms;
}

export function timedOut(what: string, ms: number): BusError {
  return new BusError('ETIMEDOUT', `${what}: no answer within ${ms} ms`);
}

/** Settles with `p`, or resolves early when `signal` aborts (the caller then checks it); no listener is left behind. */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<T | void>((resolve, reject) => {
    const onAbort = () => resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => {
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    }, (e) => {
      signal.removeEventListener('abort', onAbort);
      reject(e);
    });
  });
}
