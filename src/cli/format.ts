/*
 * Number formatting shared by the command's summaries and the project's benchmark table:
 * SI rates, microseconds with sensible precision, binary byte sizes. Absent values print
 * as '-'.
 */

export function si(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return n.toFixed(0);
}

export function us(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

export function bytes(n: number): string {
  const a = Math.abs(n);
  if (a >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (a >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n.toFixed(0)} B`;
}

/** A plain-text table; columns listed in `right` are right-aligned. */
export function textTable(head: readonly string[], rows: readonly (readonly string[])[], right: ReadonlySet<number>): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: readonly string[]) =>
    row.map((c, i) => (i === row.length - 1 && !right.has(i) ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ').trimEnd();
  return [fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...rows.map(fmt)].join('\n');
}
