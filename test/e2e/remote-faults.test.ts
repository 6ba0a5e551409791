/**
 * Faults of `dstack run --remote` on an SSH pool, end to end over the built binary (issue 4,
 * "Faults"): a `kill -9` of the CLI then a reaping run, a host that dies mid-job, a detached remote
 * run, and `dstack stop -x`. Each test has its own host (test/helpers/ssh-hosts.ts), project and
 * hermetic home, all removed in its `finally`; the last test proves nothing leaked.
 *
 * A dead CLI's lease expires after its ttl: the pool's default (30 s) would make these tests slow,
 * so they set `DSTACK_SSH_LEASE_TTL` (a knob for tests only; the remote's config.json has no ttl).
 * Host keys go to the project's own known_hosts through DSTACK_KNOWN_HOSTS.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoCrash, containersOf, createProject, runNameOf, sleep, type Project, type PsJob, type PsRunWithJobs } from '../helpers/cli.js';
import { assertNoHostOrContainerLeft, configurePool } from '../helpers/pool.js';
import { killHost, removeHost, restartHost, startHost, type TestHost } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const TTL_SECONDS = 3;
const FINAL = new Set(['done', 'failed', 'stopped', 'aborted', 'interrupted']);

const WORKFLOWS = `workflows:
  - name: sleeper
    image: ${IMAGE}
    commands:
      - echo sleeper-started
      - sleep 1000
  - name: quick
    image: ${IMAGE}
    commands:
      - echo quick-done
  - name: make
    image: ${IMAGE}
    commands:
      - mkdir -p out
      - echo made-remotely > out/made.txt
      - echo make-done
    artifacts:
      - out
`;

/** A project whose remote `pool` is the one host `h`. */
async function poolProject(h: TestHost, jobsPerHost = 1): Promise<Project> {
  const p = await createProject({ workflows: WORKFLOWS });
  await configurePool(p, [h], '--jobs-per-host', String(jobsPerHost));
  return p;
}

const env = (p: Project): Record<string, string> => ({
  DSTACK_KNOWN_HOSTS: join(p.home, 'known_hosts'),
  DSTACK_SSH_LEASE_TTL: String(TTL_SECONDS),
  DSTACK_STOP_GRACE: '5',
});

/** The job's folder on the host: its home is this machine's folder at the same path. */
const jobDir = (h: TestHost, job: string): string => join(h.home, '.dstack', 'jobs', job.replace(/[/\\]/g, '_'));

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** Waits until the run's only job is `running` (its container started) and returns it. */
const runningJob = (p: Project, run: string): Promise<PsJob> =>
  until(`${run} to run`, 30_000, async () => {
    const r = await p.json<PsRunWithJobs>(['ps', run, '--json']);
    return r.jobs[0]?.status === 'running' ? r.jobs[0] : undefined;
  });

const runningContainers = (p: Project, job: string): Promise<string[]> => containersOf(p.home, `label=dstack.job=${job}`, 'status=running');

test(
  'kill -9 of the CLI mid-job: ps says running while the container runs; the next run reaps it within the lease ttl; then ps says aborted',
  withTimeout(90_000, async () => {
    const h = await startHost();
    let p: Project | undefined;
    try {
      p = await poolProject(h);
      const bg = p.start(['run', 'sleeper', '--remote', 'pool'], { env: env(p) });
      await bg.waitFor((out) => out.includes('sleeper-started'), 30_000);
      const name = runNameOf(bg.stderr());
      const job = await runningJob(p, name);
      process.kill(bg.pid, 'SIGKILL');
      const killed = await bg.result;
      assert.is(killed.signal, 'SIGKILL');

      // The supervisor died, the container did not: ps must say running, and the container runs.
      const seen = await p.json<PsRunWithJobs>(['ps', name, '--json']);
      assert.is(seen.status, 'running');
      assert.is(seen.jobs[0]!.status, 'running');
      assert.is((await runningContainers(p, job.job)).length, 1);
      assert.ok(existsSync(jobDir(h, job.job)), `${jobDir(h, job.job)} exists while the job runs`);

      // The next run waits at most for the dead lease to expire, and reaps what it left.
      const started = Date.now();
      const r = await p.run(['run', 'quick', '--remote', 'pool'], { env: env(p) });
      const took = Date.now() - started;
      assertNoCrash(r);
      assert.is(r.exitCode, 0, r.stderr);
      assert.ok(r.stdout.includes('quick-done'), r.stdout);
      assert.match(r.stderr, new RegExp(`took over a stale lease on root@127\\.0\\.0\\.1:${h.port} \\(slot 0, held by ${job.job.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} of pid ${bg.pid} on `));
      assert.equal(await containersOf(p.home, `label=dstack.job=${job.job}`), [], 'the dead job\'s container is reaped');
      assert.not.ok(existsSync(jobDir(h, job.job)), `${jobDir(h, job.job)} is reaped`);
      console.log(`    kill -9 then reaping run: ${took} ms with a ${TTL_SECONDS} s lease ttl`);

      // Nothing runs the first run any more: ps says so, with a reason.
      const after = await p.json<PsRunWithJobs>(['ps', name, '--json']);
      assert.is(after.status, 'aborted');
      assert.is(after.jobs[0]!.status, 'aborted');
      assert.ok(after.jobs[0]!.reason?.includes(`the dstack process supervising it (pid ${bg.pid}) died`), String(after.jobs[0]!.reason));
      assert.equal(await containersOf(p.home), []);
    } finally {
      await p?.cleanup();
      await removeHost(h);
    }
  }),
);

test(
  'kill -9 of the CLI on a host with a free slot too (2 jobs per host): the next run on that host still reaps the dead job',
  withTimeout(90_000, async () => {
    const h = await startHost();
    let p: Project | undefined;
    try {
      p = await poolProject(h, 2);
      const bg = p.start(['run', 'sleeper', '--remote', 'pool'], { env: env(p) });
      await bg.waitFor((out) => out.includes('sleeper-started'), 30_000);
      const job = await runningJob(p, runNameOf(bg.stderr()));
      process.kill(bg.pid, 'SIGKILL');
      await bg.result;
      // Past the dead lease's ttl: what it holds is stale, and the other slot is free.
      await sleep((TTL_SECONDS + 1) * 1000);
      const r = await p.run(['run', 'quick', '--remote', 'pool'], { env: env(p) });
      assertNoCrash(r);
      assert.is(r.exitCode, 0, r.stderr);
      assert.match(r.stderr, /took over a stale lease on /);
      assert.equal(await containersOf(p.home, `label=dstack.job=${job.job}`), [], 'the dead job\'s container is reaped');
      assert.not.ok(existsSync(jobDir(h, job.job)), `${jobDir(h, job.job)} is reaped`);
    } finally {
      await p?.cleanup();
      await removeHost(h);
    }
  }),
);

test(
  'the host dies mid-job: exit 1, failed naming the host; the restarted host runs the next job within the lease ttl, reaping the dead one',
  withTimeout(90_000, async () => {
    let h = await startHost();
    let p: Project | undefined;
    try {
      p = await poolProject(h);
      const label = `root@127.0.0.1:${h.port}`;
      const bg = p.start(['run', 'sleeper', '--remote', 'pool'], { env: env(p) });
      await bg.waitFor((out) => out.includes('sleeper-started'), 30_000);
      const name = runNameOf(bg.stderr());
      const job = await runningJob(p, name);
      await killHost(h);
      const r = await bg.result;
      assertNoCrash(r);
      assert.is(r.exitCode, 1, r.stderr);
      const seen = await p.json<PsRunWithJobs>(['ps', name, '--json']);
      assert.is(seen.status, 'failed');
      assert.is(seen.jobs[0]!.status, 'failed');
      assert.ok(seen.jobs[0]!.reason?.includes(label), `reason names the host: ${seen.jobs[0]!.reason}`);
      assert.ok(r.stderr.includes(label), r.stderr);

      h = await restartHost(h);
      const started = Date.now();
      const next = await p.run(['run', 'quick', '--remote', 'pool'], { env: env(p) });
      const took = Date.now() - started;
      assertNoCrash(next);
      assert.is(next.exitCode, 0, next.stderr);
      assert.match(next.stderr, new RegExp(`took over a stale lease on ${label.replace(/\./g, '\\.')} \\(slot 0`));
      assert.equal(await containersOf(p.home, `label=dstack.job=${job.job}`), [], 'the dead job\'s container is reaped');
      assert.not.ok(existsSync(jobDir(h, job.job)), `${jobDir(h, job.job)} is reaped`);
      console.log(`    host death: "${seen.jobs[0]!.reason}"; a run on the restarted host then took ${took} ms with a ${TTL_SECONDS} s lease ttl`);
      assert.equal(await containersOf(p.home), []);
    } finally {
      await p?.cleanup();
      await removeHost(h);
    }
  }),
);

test(
  'a detached remote run (run -d --remote) finishes done with no terminal; its artifacts come home; nothing left on the host',
  withTimeout(60_000, async () => {
    const h = await startHost();
    let p: Project | undefined;
    try {
      p = await poolProject(h);
      const r = await p.run(['run', '-d', 'make', '--remote', 'pool'], { env: env(p) });
      assertNoCrash(r);
      assert.is(r.exitCode, 0, r.stderr);
      const name = r.stdout.trim();
      const done = await until(`${name} to end`, 45_000, async () => {
        const run = await p!.json<PsRunWithJobs>(['ps', name, '--json']);
        return FINAL.has(run.status) ? run : undefined;
      });
      assert.is(done.status, 'done', JSON.stringify(done));
      assert.is(done.backend, 'ssh:pool');
      assert.equal(done.jobs.map((j) => [j.status, j.artifacts]), [['done', ['out/made.txt']]]);
      const ls = await p.json<{ entries: { path: string }[] }>(['ls', name, '--json']);
      assert.equal(ls.entries.map((e) => e.path), ['out/made.txt']);
      const logs = await p.run(['logs', name]);
      assert.ok(logs.stdout.includes('make-done'), logs.stdout);
      assert.equal(await containersOf(p.home), []);
      assert.not.ok(existsSync(jobDir(h, done.jobs[0]!.job)));
    } finally {
      await p?.cleanup();
      await removeHost(h);
    }
  }),
);

test(
  '`dstack stop -x` of a detached remote run: aborted at once, no container and no job folder left on the host',
  withTimeout(60_000, async () => {
    const h = await startHost();
    let p: Project | undefined;
    try {
      p = await poolProject(h);
      const r = await p.run(['run', '-d', 'sleeper', '--remote', 'pool'], { env: env(p) });
      assert.is(r.exitCode, 0, r.stderr);
      const name = r.stdout.trim();
      const job = await runningJob(p, name);
      assert.is((await runningContainers(p, job.job)).length, 1);
      const stop = await p.run(['stop', '-x', name], { env: env(p) });
      assertNoCrash(stop);
      assert.is(stop.exitCode, 0, stop.stderr);
      assert.is(stop.stderr, `Aborting ${name}: killing sleeper (running); nothing is saved\nRun ${name} aborted\n`);
      const run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
      assert.is(run.status, 'aborted');
      assert.is(run.jobs[0]!.status, 'aborted');
      assert.equal(await containersOf(p.home), []);
      assert.not.ok(existsSync(jobDir(h, job.job)), `${jobDir(h, job.job)} is removed`);
    } finally {
      await p?.cleanup();
      await removeHost(h);
    }
  }),
);

test('sweep: no SSH host and no job container left behind', withTimeout(30_000, assertNoHostOrContainerLeft));

test.run();
