/*
 * The code's shape, as the data-path issue asks it to stay: no class in src/ or workers/
 * of more than about 350 lines (each concern in its own module), and no import circle
 * among src/, workers/ and shared/ (type-only imports included). Read from the sources.
 */
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, sources } from './helpers/source-files.js';

const MAX_CLASS_LINES = 350;

const rel = (p: string) => path.relative(ROOT, p);

test(`no class in src/ or workers/ is longer than ${MAX_CLASS_LINES} lines`, (t) => {
  let classes = 0;
  for (const file of [...sources(path.join(ROOT, 'src')), ...sources(path.join(ROOT, 'workers'))]) {
    const lines = readFileSync(file, 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = /^(?:export )?(?:abstract )?class (\w+)/.exec(lines[i]);
      if (m === null) continue;
      // The project's style closes a top-level class with a `}` alone at the start of a line.
      let end = i + 1;
      while (end < lines.length && lines[end] !== '}') end++;
      t.true(end < lines.length, `${rel(file)}: the end of class ${m[1]} was found`);
      const length = end - i + 1;
      t.true(length <= MAX_CLASS_LINES, `${rel(file)}: class ${m[1]} is ${length} lines`);
      classes++;
    }
  }
  t.true(classes > 30, `found the classes to measure (${classes})`);
});

test('no module of src/, workers/ or shared/ imports itself through others (type-only imports included)', (t) => {
  const files = ['src', 'workers', 'shared'].flatMap((d) => sources(path.join(ROOT, d)));
  const deps = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const targets: string[] = [];
    for (const m of text.matchAll(/\bfrom\s+'(\.{1,2}\/[^']+)'/g)) {
      const target = path.resolve(path.dirname(file), m[1].replace(/\.js$/, '.ts'));
      if (existsSync(target)) targets.push(target);
    }
    deps.set(file, targets);
  }
  // Tarjan's strongly connected components: any with more than one module is a circle.
  const index = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], onStack = new Set<string>();
  const circles: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next); low.set(v, next); next++;
    stack.push(v); onStack.add(v);
    for (const w of deps.get(v) ?? []) {
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); component.push(rel(w)); } while (w !== v);
      if (component.length > 1) circles.push(component);
    }
  };
  for (const f of files) if (!index.has(f)) visit(f);
  t.deepEqual(circles, []);
  t.true([...deps.values()].reduce((n, d) => n + d.length, 0) > 100, 'found the imports to follow');
});
