#!/usr/bin/env node
// The benchmarks (issue 3, item 6; BRIEF §8), never part of the test suite. Each figure comes with
// its baseline measured in the same run (interleaved where both are commands) and the target next to
// it; each part saves its figures to .bench/PART.json. Slow setup (10,000 runs, a cached
// 1,000-workflow DAG, 1 GiB of files) is made once and kept in $DSTACK_BENCH_DIR (/var/tmp/dstack-bench).
// Usage: node scripts/bench/run.mjs [overhead|startup|dag|hash|store|aws|stop|logs|env ...]   (needs `npm run build`)
// DSTACK_BENCH_BIN measures another build's bin/dstack (a before/after comparison).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './lib.mjs';

const PARTS = {
  overhead: async () => (await import('./overhead.mjs')).run(),
  startup: async () => (await import('./startup.mjs')).run(),
  dag: async () => (await import('./dag.mjs')).run(),
  hash: async () => (await import('./hash.mjs')).runHash(),
  store: async () => (await import('./hash.mjs')).runStore(),
  aws: async () => (await import('./aws.mjs')).run(),
  stop: async () => (await import('./stop.mjs')).run(),
  env: async () => (await import('./env.mjs')).run(),
  logs: async () => (await import('./logs.mjs')).run(),
};
/** Parts run when none is named: `logs` runs a 300 MB job twice, so it is run on request only. */
const DEFAULT = ['overhead', 'startup', 'dag', 'hash', 'store', 'aws', 'stop'];

const asked = process.argv.slice(2);
const unknown = asked.filter((a) => !(a in PARTS));
if (unknown.length) {
  console.error(`unknown part ${unknown.join(', ')}; choose from ${Object.keys(PARTS).join(', ')}`);
  process.exit(2);
}
if (!existsSync(join(root, 'dist/dstack.mjs'))) {
  console.error('dist/ is missing: run `npm run build` first');
  process.exit(2);
}

const rows = [];
const files = [];
for (const name of asked.length ? asked : DEFAULT) {
  console.error(`— ${name}`);
  const r = await PARTS[name]();
  rows.push(...r.rows);
  files.push(r.file);
}

const head = ['figure', 'median', 'baseline (same run)', 'ratio', 'target', ''];
const table = [
  head,
  ...rows.map((r) => [r.name, r.value, r.baseline, r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x`, r.target, r.ok === undefined ? '' : r.ok ? 'ok' : 'MISSED']),
];
const widths = head.map((_, i) => Math.max(...table.map((row) => row[i].length)));
for (const row of table) console.log(row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
console.log(`\nfigures: ${files.map((f) => f.replace(`${root}`, '')).join(', ')}`);
process.exitCode = rows.some((r) => r.ok === false) ? 1 : 0;
