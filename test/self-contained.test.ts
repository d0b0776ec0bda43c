/*
 * A clone of this repository must hold every file its code, tests and scripts read. Every
 * relative path literal that the sources resolve against their own location
 * (`new URL('…', import.meta.url)`, path.join/resolve from __dirname-like roots) is resolved
 * from where the compiled file runs (dist/<same folder>) and must stay inside the repository.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, sources } from './helpers/source-files.js';

const FOLDERS = ['src', 'shared', 'workers', 'test', 'perf', 'examples'];
const URL_LITERAL = /new URL\(\s*(['"`])(\.{1,2}\/[^'"`]*)\1\s*,\s*import\.meta\.url/g;

test('every path a source file resolves against its own location stays inside the repository', (t) => {
  let checked = 0;
  for (const folder of FOLDERS) {
    for (const file of sources(path.join(ROOT, folder))) {
      const text = readFileSync(file, 'utf8');
      const runsFrom = path.join(ROOT, 'dist', path.dirname(path.relative(ROOT, file)));
      for (const m of text.matchAll(URL_LITERAL)) {
        const target = path.resolve(runsFrom, m[2]);
        checked++;
        t.true(target.startsWith(ROOT + path.sep), `${path.relative(ROOT, file)}: '${m[2]}' resolves outside the repository`);
      }
    }
  }
  t.true(checked > 10, `found the path literals to check (${checked})`);
});

test('the quota vectors the rule is tested against are part of the repository', (t) => {
  const vectors = JSON.parse(readFileSync(path.join(ROOT, 'test', 'fixtures', 'quota-vectors.json'), 'utf8'));
  t.true(Array.isArray(vectors.cases) && vectors.cases.length > 0);
});
