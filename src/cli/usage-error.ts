/*
 * The command line's one failure type for bad input: a message for the user and exit
 * code 2 (the convention of getopt tools). Everything else that fails is exit code 1.
 */

import { parseArgs, type ParseArgsConfig } from 'node:util';

export const EXIT_USAGE = 2;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** node:util parseArgs, strict, with its errors turned into UsageErrors that name the command. */
export function parse<T extends ParseArgsConfig>(command: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs<T>({ strict: true, ...config });
  } catch (e) {
    throw new UsageError(`${command}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** An integer flag within [min, max]; `what` names the flag in the message. */
export function intFlag(value: string | undefined, what: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+(\.\d+)?(e\d+)?$/i.test(value.trim()) || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`${what} must be an integer from ${min} to ${max}, got '${value}'`);
  }
  return n;
}

/** A positive number flag (rates, durations). */
export function numberFlag(value: string | undefined, what: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`${what} must be a number from ${min} to ${max}, got '${value}'`);
  }
  return n;
}
