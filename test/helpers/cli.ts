/*
 * Runs the `threadbus` command as a child process, the way a user runs it, with a bound
 * on how long it may take; and a scratch directory per test that is removed afterwards.
 */

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

export const BIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** No run in these tests should come near this; it only turns a hang into a failure. */
const CHILD_TIMEOUT_MS = 120_000;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function cli(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: CHILD_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ code, stdout, stderr });
      });
  });
}

/** Starts the command without waiting; the test's teardown kills it if it is still running. */
export function cliChild(t: ExecutionContext, args: string[]): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  child.once('exit', () => clearTimeout(timer));
  t.teardown(() => {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

export function scratch(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'threadbus-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
