/*
 * The test-thread end of the fixtures' worker RPC: call a method by name, get exactly one
 * reply by id. Errors come back as plain data and are rebuilt (BusError keeps its code);
 * a worker that errors or exits fails every call still waiting. Subclasses add typed methods.
 */

import type { Worker } from 'node:worker_threads';
import { BusError } from '../../src/index.js';

export class RpcClient {
  readonly worker: Worker;
  readonly exited: Promise<number>;
  #pending = new Map<number, { resolve: (v: any) => void; reject: (e: unknown) => void }>();
  #next = 1;

  /** `failOnError`: a worker 'error' fails pending calls (off where crashes are provoked on purpose). */
  protected constructor(worker: Worker, failOnError: boolean) {
    this.worker = worker;
    this.exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.on('message', ({ id, ok, value, error }) => {
      const p = this.#pending.get(id);
      if (p === undefined) return;
      this.#pending.delete(id);
      if (ok) p.resolve(value);
      else p.reject(error.code === 'TEST' ? new Error(error.message) : new BusError(error.code, error.message, error));
    });
    worker.on('error', (e) => {
      if (failOnError) this.#failAll(e);
    });
    worker.once('exit', () => this.#failAll(new Error('fixture worker exited')));
  }

  #failAll(e: unknown): void {
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }

  /** Resolves once the worker has said it is ready (the reply with id 0). */
  protected ready(): Promise<void> {
    return new Promise<void>((resolve, reject) => this.#pending.set(0, { resolve: () => resolve(), reject }));
  }

  call<T = any>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, method, args });
    });
  }
}
