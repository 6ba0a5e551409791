// The team bucket against moto's S3 (one moto server, started here and stopped at the end):
// - push: `dstack push RUN` of a run whose artifacts are 1 GiB in 10,000 files (hash.mjs's files),
//   against a plain parallel upload of the same files with the same SDK, 16 at a time
//   (bucket-driver.ts baseline), each into an empty bucket, interleaved per round. Target ≤ 1.25×.
// - second push: the same push again: 0 bytes sent (and how long checking takes).
// - ps --remote: `dstack ps --remote` over 1,000 team runs of the project's repository. Target < 1 s.
// moto is the slow side here (a Python server): both uploads meet the same moto.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeFiles } from './hash.mjs';
import { cacheDir, dstack, median, ms, root, save, time } from './lib.mjs';

const FULL = join(cacheDir, 'files-1g');
/**
 * DSTACK_BENCH_BUCKET_FILES=N pushes only the first N of the 10,000 files (hard links, in a home of
 * their own): quicker while iterating. The bar's figures are the full set's.
 */
const FILES = Number(process.env.DSTACK_BENCH_BUCKET_FILES ?? 10_000);
const DATA = FILES >= 10_000 ? FULL : join(cacheDir, `files-${FILES}`);
const TEAM_RUNS = 1000;
const WHAT = DATA === FULL ? '1 GiB in 10,000 files' : `${FILES} of the 10,000 files`;

function makeSubset(log) {
  if (DATA === FULL || existsSync(`${DATA}.made`)) return;
  log(`bucket: linking the first ${FILES} files into ${DATA} (once)…`);
  rmSync(DATA, { recursive: true, force: true });
  let n = 0;
  for (const d of readdirSync(FULL).sort()) {
    for (const f of readdirSync(join(FULL, d)).sort()) {
      if (n++ >= FILES) break;
      mkdirSync(join(DATA, d), { recursive: true });
      linkSync(join(FULL, d, f), join(DATA, d, f));
    }
  }
  writeFileSync(`${DATA}.made`, `${new Date().toISOString()}\n`);
}

/**
 * moto logs every request. Its output goes to a file, not a pipe: the measurements run the CLI with
 * spawnSync, which blocks this process's event loop, so a pipe would fill, moto's logging would block
 * on it and every request thread behind the logging lock (the "hang under 16 at once" seen before).
 */
async function startMoto() {
  const log = join(cacheDir, `moto-${process.pid}.log`);
  const fd = openSync(log, 'w');
  const child = spawn('python3', [join(root, 'test/helpers/moto_server.py'), '-H', '127.0.0.1', '-p', '0'], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let exited;
  child.once('exit', (c) => (exited = c));
  let port;
  for (const deadline = Date.now() + 30_000; port === undefined; await new Promise((r) => setTimeout(r, 100))) {
    const m = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(readFileSync(log, 'utf8'));
    if (m) port = Number(m[1]);
    else if (exited !== undefined || Date.now() > deadline) throw new Error(`moto did not start (exit ${exited}): see ${log}`);
  }
  const endpoint = `http://127.0.0.1:${port}`;
  return { endpoint, log, stop: () => child.kill('SIGTERM') };
}

function driver(env, ...args) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/bench/bucket-driver.ts'), ...args], { cwd: root, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`bucket-driver ${args[0]} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** A home holding one finished run whose artifacts are the 1 GiB of files; made once. */
function benchHome(log) {
  const home = join(cacheDir, DATA === FULL ? 'bucket-home' : `bucket-home-${FILES}`);
  const marker = `${home}.made`;
  if (existsSync(marker)) return { home, run: spawnSync('cat', [marker], { encoding: 'utf8' }).stdout.trim() };
  rmSync(home, { recursive: true, force: true });
  log('bucket: storing the 1 GiB run in a bench home (once)…');
  const run = driver(process.env, 'prepare', home, DATA);
  writeFileSync(marker, `${run}\n`);
  return { home, run };
}

export async function run({ rounds = Number(process.env.DSTACK_BENCH_BUCKET_ROUNDS ?? 1), log = console.error } = {}) {
  makeFiles(log);
  makeSubset(log);
  const { home, run: runName } = benchHome(log);
  const moto = await startMoto();
  const project = mkdtempSync(join(cacheDir, 'bucket-proj-'));
  mkdirSync(join(project, '.dstack'));
  writeFileSync(join(project, '.dstack', 'repo-id'), 'local-0123456789abcdef0123456789abcdef\n');
  writeFileSync(join(project, '.dstack', 'workflows.yaml'), 'workflows: []\n');
  const env = { ...process.env, DSTACK_HOME: home, AWS_ENDPOINT_URL: moto.endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'bench', AWS_SECRET_ACCESS_KEY: 'bench' };
  // A new bucket for each measurement rather than `POST /moto-api/reset` between them: moto 5.2.1
  // was seen to deadlock (every request hanging) under 16 concurrent requests right after a reset.
  let made = 0;
  const fresh = (name) => {
    const bucket = `${name}-${++made}`;
    driver(env, 'buckets', bucket);
    spawnSync(dstack, ['config', 's3', '--name', 'team', '--bucket', bucket, '--force'], { env, cwd: project });
    return bucket;
  };
  try {
    const push = [];
    const again = [];
    const plain = [];
    let second;
    for (let i = 0; i < rounds; i++) {
      fresh('bench-team');
      log(`bucket: round ${i + 1}: dstack push of ${WHAT}…`);
      push.push(time(dstack, ['push', runName, '--json'], { env, cwd: project }));
      again.push(time('sh', ['-c', `"${dstack}" push ${runName} --json > "${join(project, 'again.json')}"`], { env, cwd: project }));
      second = JSON.parse(spawnSync('cat', [join(project, 'again.json')], { encoding: 'utf8' }).stdout);
      const plainBucket = fresh('bench-plain');
      log(`bucket: round ${i + 1}: plain parallel upload (16 at a time)…`);
      plain.push(time(process.execPath, ['--import', 'tsx', join(root, 'scripts/bench/bucket-driver.ts'), 'baseline', plainBucket, DATA], { env, cwd: root }));
    }
    const teamBucket = fresh('bench-ps');
    log(`bucket: ${TEAM_RUNS} team runs for ps --remote…`);
    driver(env, 'fill-team', teamBucket, String(TEAM_RUNS), 'local-0123456789abcdef0123456789abcdef');
    const ps = [];
    for (let i = 0; i < 7; i++) ps.push(time(dstack, ['ps', '--remote'], { env, cwd: project }));
    const m = { push: median(push), plain: median(plain), again: median(again), ps: median(ps) };
    const file = save('bucket', {
      commands: { push: `dstack push ${runName} (${WHAT})`, plain: 'bucket-driver.ts baseline (PutObject, 16 at a time)', again: 'the same push again', ps: `dstack ps --remote (${TEAM_RUNS} runs)` },
      rounds,
      medianMs: m,
      ratio: m.push / m.plain,
      secondPush: second,
      samplesMs: { push, plain, again, ps },
    });
    // Kept when the bench fails, to read; a finished one's goes.
    rmSync(moto.log, { force: true });
    return {
      file,
      rows: [
        { name: `bucket: push ${WHAT} to moto`, value: ms(m.push), baseline: `plain upload ${ms(m.plain)}`, ratio: m.push / m.plain, target: '≤ 1.25x', ok: m.push / m.plain <= 1.25 },
        { name: 'bucket: second push', value: `${second?.bytes?.sent ?? '?'} B sent, ${ms(m.again)}`, baseline: '', target: '0 B', ok: second?.bytes?.sent === 0 },
        { name: `bucket: ps --remote (${TEAM_RUNS} runs)`, value: ms(m.ps), baseline: '', target: '< 1 s', ok: m.ps < 1000 },
      ],
    };
  } finally {
    moto.stop();
    rmSync(project, { recursive: true, force: true });
  }
}
