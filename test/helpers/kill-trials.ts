/**
 * Seeded kill -9 trials of a local run (issue 7, Bars): each trial starts `dstack run job`, SIGKILLs
 * the CLI after a random delay (so at a random point of its life: planning, the record, pulling or
 * inspecting, staging, between create and record, mid-job, collecting artifacts, teardown), waits
 * for what the CLI left to stop by itself, then runs one `dstack ps -a --json` — the next command
 * that reaches the engine — and checks what is left: no container of the home, no job folder, no run
 * shown running, no stack trace, a cause on every job that did not finish.
 *
 * Used by test/e2e/kill-trials.test.ts (a few trials in CI) and scripts/kill-trials.ts (the full
 * count, with figures). The seed makes the delays, so a failing trial is replayed by its seed.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { containersOf, type CliResult, type Project, type PsRunWithJobs } from './cli.js';
import { until } from './wait.js';

/** A job that prints, saves an artifact and sleeps a little: every stage of a run takes some time. */
export const TRIAL_WORKFLOWS = `workflows:
  - name: job
    image: dstack-test/busybox:latest
    commands:
      - echo started
      - mkdir -p out && echo x > out/x.txt
      - sleep 1
    artifacts: [out]
`;

const isFinalStatus = (s: string): boolean => ['done', 'failed', 'aborted', 'stopped', 'interrupted'].includes(s);

/** mulberry32: a small seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface TrialResult {
  readonly delayMs: number;
  /** The CLI was killed (false: it ended by itself before the delay). */
  readonly killed: boolean;
  /** The run's status as `ps` shows it afterwards, or `none` (killed before it was recorded). */
  readonly status: string;
  /** What went wrong; empty when everything held. */
  readonly problems: readonly string[];
}

/** One trial in `p` (a project made with TRIAL_WORKFLOWS): kill after `delayMs`, then check. */
export async function killTrial(p: Project, delayMs: number): Promise<TrialResult> {
  const before = new Set((await p.json<{ run: string }[]>(['ps', '-a', '--json'])).map((r) => r.run));
  const bg = p.start(['run', 'job']);
  const timer = setTimeout(() => bg.signal('SIGKILL'), delayMs);
  const r = await bg.result;
  clearTimeout(timer);
  const killed = r.signal === 'SIGKILL';
  const problems: string[] = [];
  if (r.stderr.includes('    at ')) problems.push(`stack trace from the killed run:\n${r.stderr}`);
  // A container the killed CLI started runs on (by design: `ps` shows its run running) until its
  // job ends; the engine may even start it after the CLI died (the start request was in flight).
  // So: wait for none to run, ask ps; while ps still shows the run running *and* its container runs,
  // that is something behind it: wait again.
  let ps: CliResult | undefined;
  for (let round = 0; round < 5; round++) {
    await until('the orphaned container to end by itself', 30_000, async () => (await containersOf(p.home, 'status=running')).length === 0, 100);
    ps = await p.run(['ps', '-a', '--json']);
    const fresh = ps.exitCode === 0 ? (JSON.parse(ps.stdout) as { run: string; status: string }[]).find((x) => !before.has(x.run)) : undefined;
    if (!fresh || isFinalStatus(fresh.status) || (await containersOf(p.home, 'status=running')).length === 0) break;
  }
  ps = ps!;
  if (ps.exitCode !== 0) problems.push(`ps exited ${ps.exitCode}: ${ps.stderr}`);
  if (ps.stderr.includes('    at ')) problems.push(`stack trace from ps:\n${ps.stderr}`);
  const runs = ps.exitCode === 0 ? (JSON.parse(ps.stdout) as { run: string; status: string }[]) : [];
  const run = runs.find((x) => !before.has(x.run));
  if (run) {
    const detail = await p.json<PsRunWithJobs>(['ps', run.run, '--json']);
    if (!isFinalStatus(run.status)) {
      const jobs = detail.jobs.map((j) => `${j.workflow} ${j.status}${j.reason ? ` (${j.reason})` : ''}`).join(', ');
      problems.push(`run ${run.run} shown ${run.status} with nothing behind it: ${jobs}`);
    }
    for (const j of detail.jobs) if (j.status !== 'done' && !j.reason) problems.push(`job ${j.job} ended ${j.status} with no cause recorded`);
  }
  const left = await containersOf(p.home);
  if (left.length) problems.push(`${left.length} container(s) left: ${left.join(' ')}`);
  const folders = existsSync(join(p.home, 'jobs')) ? readdirSync(join(p.home, 'jobs')) : [];
  if (folders.length) problems.push(`job folder(s) left: ${folders.join(' ')}`);
  return { delayMs, killed, status: run?.status ?? 'none', problems };
}
