/** Human-readable sizes, durations and times for the terminal. */

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${m % 60}m`;
}

/** `3 mins ago`, `yesterday 14:02`, or a date for older times. */
export function formatAgo(at: number, now = Date.now()): string {
  const s = Math.round((now - at) / 1000);
  if (s < 5) return 'now';
  if (s < 60) return `${s} secs ago`;
  if (s < 3600) return `${Math.round(s / 60)} mins ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} hours ago`;
  return new Date(at).toISOString().slice(0, 16).replace('T', ' ');
}

/** Left-aligned columns separated by two spaces. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
