/*
 * The project's own source files, for the tests that read the tree itself
 * (test/structure.test.ts, test/self-contained.test.ts). Tests run from dist/test/, so
 * the checkout's root is two folders up from this module's compiled place.
 */

import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout's root (this file runs as dist/test/helpers/source-files.js). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Every .ts file under `dir`, recursively. */
export function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}
