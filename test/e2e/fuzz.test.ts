/**
 * Fuzz: malformed workflow files, made from our own 0.7-style corpus by a seeded generator
 * (test/helpers/fuzz.ts), through the BUILT binary as `dstack run X --dry-run`. Every case must end
 * with exit 0 or exit 2 with a coded error (nothing on stdout then) — never 70, another code, a
 * stack trace, a hang (a per-case timeout) or unbounded memory (the child's peak RSS, measured by a
 * preloaded module that writes `process.resourceUsage().maxRSS` when it exits). Outcomes are
 * counted and printed; failing inputs are printed with their case number to reproduce them.
 *
 * Bounded: DSTACK_FUZZ_CASES cases (default 100) or DSTACK_FUZZ_SECONDS (default 150), whichever
 * ends first; DSTACK_FUZZ_SEED picks the cases (default below, printed).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, createProject, ensureBuilt } from '../helpers/cli.js';
import { mutate, rng, seedCorpus, targetOf } from '../helpers/fuzz.js';
import { withTimeout } from '../helpers/timeout.js';

const BIN = fileURLToPath(new URL('../../bin/dstack', import.meta.url));
const CORPUS = fileURLToPath(new URL('../fixtures/compat-0.7', import.meta.url));
const SEED = Number(process.env.DSTACK_FUZZ_SEED ?? 20_240_808);
const CASES = Number(process.env.DSTACK_FUZZ_CASES ?? 100);
const SECONDS = Number(process.env.DSTACK_FUZZ_SECONDS ?? 150);
/** Fewer cases than this in the time allowed means the run proved little: a failure, not a pass. */
const MIN_CASES = Math.min(CASES, 25);
const CASE_TIMEOUT_MS = 30_000;
/** A dry run of a 1 MiB file peaks near 200 MB; four times the cost of a normal one is a leak. */
const MAX_RSS_KB = 512 * 1024;

interface Failure {
  readonly n: number;
  readonly why: string;
  readonly input: string;
  readonly stderr: string;
}

test('fuzz: malformed workflow files end in exit 0 or 2, without a trace, a hang or unbounded memory', withTimeout((SECONDS + 120) * 1000, async () => {
  ensureBuilt();
  const scratch = mkdtempSync(join(tmpdir(), 'dstack-fuzz-'));
  const preload = join(scratch, 'rss.mjs');
  writeFileSync(preload, [
    "import { writeFileSync } from 'node:fs';",
    "process.on('exit', () => { try { writeFileSync(process.env.DSTACK_FUZZ_RSS_FILE, String(process.resourceUsage().maxRSS)); } catch {} });",
    '',
  ].join('\n'));
  const p = await createProject({ workflows: 'workflows: []\n' });
  const seeds = seedCorpus(CORPUS);
  const r = rng(SEED);
  const counts = new Map<string, number>();
  const failures: Failure[] = [];
  let peakKb = 0;
  let n = 0;
  const deadline = Date.now() + SECONDS * 1000;
  try {
    for (; n < CASES && Date.now() < deadline; n++) {
      const { text } = mutate(r.pick(seeds), r, seeds);
      writeFileSync(join(p.dir, '.dstack/workflows.yaml'), text);
      const rssFile = join(scratch, `rss-${n}`);
      const res = await execa(process.execPath, ['--import', pathToFileURL(preload).href, BIN, 'run', targetOf(text), '--dry-run'], {
        cwd: p.dir,
        env: { ...p.env, DSTACK_FUZZ_RSS_FILE: rssFile },
        extendEnv: false,
        stdin: 'ignore',
        reject: false,
        timeout: CASE_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        stripFinalNewline: false,
      });
      const stdout = String(res.stdout ?? '');
      const stderr = String(res.stderr ?? '');
      let rssKb = 0;
      try {
        rssKb = Number(readFileSync(rssFile, 'utf8'));
      } catch {
        // No figure: the process was killed (a hang) and is reported as such below.
      }
      peakKb = Math.max(peakKb, rssKb);
      const code = /^error (DS\d{4})/m.exec(stderr)?.[1];
      let why: string | undefined;
      if (res.timedOut) why = `no end within ${CASE_TIMEOUT_MS / 1000} s (a hang)`;
      else if (stderr.includes('    at ') || stdout.includes('    at ')) why = 'a stack trace';
      else if (/internal error/i.test(stderr)) why = 'an internal error';
      else if (res.exitCode === 2 && !code) why = 'exit 2 without a coded error';
      else if (res.exitCode === 2 && stdout !== '') why = 'exit 2 with output on stdout';
      else if (res.exitCode !== 0 && res.exitCode !== 2) why = `exit ${res.exitCode ?? res.signal}`;
      else if (rssKb > MAX_RSS_KB) why = `peak memory ${Math.round(rssKb / 1024)} MB`;
      if (why) failures.push({ n, why, input: text, stderr });
      const key = why ? `FAILED (${why})` : res.exitCode === 0 ? 'exit 0 (planned)' : `exit 2 (${code})`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  } finally {
    await p.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  }
  const lines = [...counts].sort((a, b) => b[1] - a[1]).map(([k, c]) => `  ${String(c).padStart(4)}  ${k}`);
  console.log(`fuzz: seed ${SEED}, ${n} cases, peak RSS ${Math.round(peakKb / 1024)} MB\n${lines.join('\n')}`);
  for (const f of failures.slice(0, 5))
    console.log(`--- case ${f.n} (seed ${SEED}): ${f.why}\ninput (first 600 characters):\n${f.input.slice(0, 600)}\nstderr:\n${f.stderr.slice(0, 1500)}`);
  assert.ok(n >= MIN_CASES, `only ${n} cases ran in ${SECONDS} s; the machine is too busy for this test to mean anything`);
  assert.is(failures.length, 0, `${failures.length} of ${n} cases failed (see above)`);
}));

test('fuzz: no container was made', () => assertNoContainersLeft());

test.run();
