// Logs and space (issue 8): a job that prints 300 MB. With DSTACK_LOG_LIMIT=unlimited the whole
// log is stored, and we measure the peak RSS of `dstack logs RUN > /dev/null` (it must stream, not
// hold the log) and store.db's size before and after `dstack rm` (it must give the space back).
// With the default limit we measure what the same output costs the store. Setup runs the job each
// time (about a minute here), so this part is not in the default set of parts.
// DSTACK_BENCH_BIN=path/to/bin/dstack measures another build (e.g. main before the change).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, dstack, image, median, save } from './lib.mjs';

const BYTES = 300_000_000;
const LINE = 'epoch 12 step 3456 loss 0.0123456 accuracy 0.9876 lr 0.0001 -- a line of training output';

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
const sizeOf = (home) => ['store.db', 'store.db-wal'].reduce((n, f) => n + (statSync(join(home, f), { throwIfNoEntry: false })?.size ?? 0), 0);

function cli(args, { env, cwd, stdout = 'ignore' }) {
  const r = spawnSync(dstack, args, { env, cwd, stdio: ['ignore', stdout, 'pipe'], encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`dstack ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  return r;
}

/** A fresh project and home; runs the job once; returns the run's name. */
function runBig(dir, limit) {
  const project = join(dir, 'project');
  const home = join(dir, 'home');
  mkdirSync(join(project, '.dstack'), { recursive: true });
  writeFileSync(
    join(project, '.dstack/workflows.yaml'),
    `workflows:\n  - name: big\n    image: ${image}\n    commands:\n      - yes '${LINE}' | head -c ${BYTES}\n`,
  );
  const env = { ...process.env, DSTACK_HOME: home, ...(limit ? { DSTACK_LOG_LIMIT: limit } : {}) };
  const r = cli(['run', 'big'], { env, cwd: project });
  const name = /^Run (\S+): /m.exec(r.stderr)?.[1];
  if (!name) throw new Error(`no run name in: ${r.stderr}`);
  return { name, env, project, home };
}

/** Peak RSS in kB of `dstack ARGS > /dev/null`, by /usr/bin/time. */
function peakRss(args, { env, cwd }) {
  const r = spawnSync('/usr/bin/time', ['-f', '%M', dstack, ...args], { env, cwd, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dstack ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  return Number(r.stderr.trim().split('\n').at(-1));
}

export async function run({ rounds = 3, log = console.error } = {}) {
  mkdirSync(cacheDir, { recursive: true });
  const dir = mkdtempSync(join(cacheDir, 'logs-'));
  try {
    log(`logs: a job printing ${mb(BYTES)}, stored in full (DSTACK_LOG_LIMIT=unlimited)…`);
    const full = runBig(join(dir, 'full'), 'unlimited');
    const storedFull = sizeOf(full.home);
    const rss = Array.from({ length: rounds }, () => peakRss(['logs', full.name], full));
    const version = peakRss(['--version'], full);
    cli(['rm', full.name, '-y'], full);
    const afterRm = sizeOf(full.home);

    log('logs: the same job with the default limit…');
    const capped = runBig(join(dir, 'capped'));
    const storedCapped = sizeOf(capped.home);
    cli(['prune', '--older-than', '0s', '-y'], capped);
    const afterPrune = sizeOf(capped.home);

    const figures = {
      bin: dstack,
      outputBytes: BYTES,
      logsPeakRssKb: rss,
      versionPeakRssKb: version,
      storeBytes: { fullLog: storedFull, afterRm, cappedLog: storedCapped, afterPrune },
    };
    const file = save('logs', figures);
    const peak = median(rss) * 1024;
    return {
      file,
      rows: [
        { name: `logs: peak RSS, dstack logs (${mb(BYTES)} log)`, value: mb(peak), baseline: `--version ${mb(version * 1024)}`, ratio: peak / (version * 1024), target: '< 128 MB (flat in the log size)', ok: peak < 128 * 2 ** 20 },
        { name: '  store.db with the whole log', value: mb(storedFull), baseline: '', target: '', ok: undefined },
        { name: '  store.db after dstack rm', value: mb(afterRm), baseline: `before ${mb(storedFull)}`, target: '< 5 MB', ok: afterRm < 5e6 },
        { name: '  store.db, default log limit', value: mb(storedCapped), baseline: `output ${mb(BYTES)}`, target: '< 40 MB', ok: storedCapped < 40e6 },
        { name: '  store.db after prune', value: mb(afterPrune), baseline: `before ${mb(storedCapped)}`, target: '< 5 MB', ok: afterPrune < 5e6 },
      ],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
