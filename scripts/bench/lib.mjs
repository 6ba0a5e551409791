// Shared by the benchmark parts: timing a command, interleaving it with its baseline, medians, the
// bench folders, and saving figures to .bench/NAME.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const root = new URL('../..', import.meta.url).pathname;
/** The CLI measured: this tree's, or another build's (DSTACK_BENCH_BIN) for a before/after comparison. */
export const dstack = process.env.DSTACK_BENCH_BIN ?? join(root, 'bin/dstack');
export const image = 'dstack-test/busybox:latest';
/** Data that is slow to make (10,000 runs, 1,000 cached jobs, 1 GiB of files), kept between bench runs. */
export const cacheDir = process.env.DSTACK_BENCH_DIR ?? '/var/tmp/dstack-bench';

/** Wall time of one run of `cmd args`, in ms; throws when it fails. */
export function time(cmd, args, opts = {}) {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 << 20, ...opts });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs each named command once per round, in turn (A B C A B C …), so all of them see the same
 * machine noise; one untimed warm-up round first. Returns the samples and the medians, by name.
 */
export function interleave(rounds, commands) {
  for (const run of Object.values(commands)) run();
  const samples = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  for (let i = 0; i < rounds; i++) for (const [k, run] of Object.entries(commands)) samples[k].push(run());
  const medians = Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, median(xs)]));
  return { samples, medians };
}

export function save(name, figures) {
  mkdirSync(join(root, '.bench'), { recursive: true });
  const file = join(root, '.bench', `${name}.json`);
  writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), ...figures }, null, 2)}\n`);
  return file;
}

export const ms = (x) => `${x < 10 ? x.toFixed(1) : x.toFixed(0)} ms`;

/** Drops the page cache when we may (root); says whether it did. */
export function dropPageCache() {
  const r = spawnSync('sh', ['-c', 'sync && echo 3 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' });
  return r.status === 0;
}
