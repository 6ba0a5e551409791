/**
 * Concurrent runs share a dep that is being produced (issue 8): ten runs at once that need the
 * same uncached dep run it once — the other nine wait for it and reuse its artifacts, and
 * `--dry-run --explain` says a run would wait; a producer whose CLI was killed is taken over.
 *
 * The shared job holds on a gate (a file the test creates in its job folder), so the test decides
 * when it finishes: every other run has arrived and is waiting by then, whatever the machine's speed.
 */
import { existsSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject, runNameOf, sleep, type Background, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const RUNS = 10;

const WORKFLOWS = `workflows:
  - name: shared
    image: ${IMAGE}
    commands:
      - echo making-shared
      - while [ ! -e go ]; do sleep 0.1; done
      - mkdir -p out && echo "stamp-$$$$-$$(date +%s)" > out/stamp
    artifacts: [out]
  - name: top
    image: ${IMAGE}
    deps: [shared]
    commands:
      - cat out/stamp
`;

type PsJob = PsRunWithJobs['jobs'][number] & { cachedFrom: string | null };

/** The job folders under the home, newest last (a job makes its folder when staged). */
const jobDirs = (p: Project): string[] => (existsSync(join(p.home, 'jobs')) ? readdirSync(join(p.home, 'jobs')).sort() : []);

async function until(what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + ms; !(await check()); await sleep(100)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

/** Lets the shared job in `dir` (a job folder's name) finish. */
const open = (p: Project, dir: string): Promise<void> => writeFile(join(p.home, 'jobs', dir, 'workflow', 'go'), '');

test(
  'ten concurrent runs needing the same uncached dep run it once; nine wait for it and reuse it; --explain says a run would wait',
  // Ten runs at once on a 2-core CI machine: generous limits (about a minute when it is quiet).
  withTimeout(600_000, async () => {
    const p = await createProject({ workflows: WORKFLOWS });
    const runs: Background[] = [];
    try {
      for (let i = 0; i < RUNS; i++) runs.push(p.start(['run', 'top'], { timeoutMs: 540_000 }));
      // One producer has a job folder; the nine others say they wait for it.
      await until('one producer and nine waiting runs', 300_000, () => runs.filter((r) => r.stderr().includes('  shared: waiting for run ')).length === RUNS - 1);
      const producerRun = runs.find((r) => !r.stderr().includes('waiting for run'))!;
      await producerRun.waitFor((out) => out.includes('making-shared\n'), 120_000);
      const producer = runNameOf(producerRun.stderr());
      assert.equal(jobDirs(p).length, 1, 'only the producer staged the shared job');

      const explained = await p.run(['run', 'top', '--dry-run', '--explain']);
      assert.is(explained.exitCode, 0, explained.stderr);
      assert.equal(explained.stdout.split('\n').slice(0, 2), [
        `1. shared  waits (run ${producer} is making it now)`,
        `   why:      being made now by run ${producer} (${producer}/shared): this run waits for it and reuses its artifacts`,
      ]);

      await open(p, jobDirs(p)[0]!);
      const results = await Promise.all(runs.map((r) => r.result));
      for (const r of results) {
        assert.is(r.exitCode, 0, r.stderr);
        assertNoCrash(r);
      }
      const stamps = new Set(results.map((r) => /stamp-\S+/.exec(r.stdout)?.[0]));
      assert.is(stamps.size, 1, `every top read the same artifacts: ${[...stamps].join(' | ')}`);

      const shared = await Promise.all(results.map(async (r) => (await p.json<PsRunWithJobs>(['ps', runNameOf(r.stderr), '--json'])).jobs[0] as PsJob));
      const made = shared.filter((j) => j.cachedFrom === null);
      assert.equal(made.map((j) => [j.job, j.status]), [[`${producer}/shared`, 'done']], 'shared ran once');
      assert.equal(shared.filter((j) => j.cachedFrom !== null).map((j) => [j.status, j.cachedFrom]), Array(RUNS - 1).fill(['done', `${producer}/shared`]));
      for (const r of results.filter((x) => runNameOf(x.stderr) !== producer)) {
        assert.ok(r.stderr.includes(`  shared: waiting for run ${producer}, which is making the same artifacts now (${producer}/shared)\n  shared: cached (same inputs as ${producer}/shared)\n`), r.stderr);
      }
      assert.is((await p.run(['logs', producer])).stdout.split('making-shared').length - 1, 1);
    } finally {
      for (const r of runs) r.signal('SIGKILL');
      await p.cleanup();
    }
  }),
);

test(
  'a producer whose CLI was killed (kill -9) holds a dead claim: the next run takes over and makes the dep itself',
  withTimeout(180_000, async () => {
    const p = await createProject({ workflows: WORKFLOWS });
    let first: Background | undefined;
    try {
      first = p.start(['run', 'top']);
      await first.waitFor((out) => out.includes('making-shared\n'), 60_000);
      first.signal('SIGKILL');
      await first.result;
      const orphan = jobDirs(p);
      assert.is(orphan.length, 1);

      const second = p.start(['run', 'top']);
      await until('the second run to stage its own shared job', 60_000, () => jobDirs(p).length === 2);
      await open(p, jobDirs(p).find((d) => !orphan.includes(d))!);
      const r = await second.result;
      assert.is(r.exitCode, 0, r.stderr);
      assert.not.ok(r.stderr.includes('waiting for run'), r.stderr);
      const name = runNameOf(r.stderr);
      const job = (await p.json<PsRunWithJobs>(['ps', name, '--json'])).jobs[0] as PsJob;
      assert.equal([job.status, job.cachedFrom], ['done', null]);
    } finally {
      first?.signal('SIGKILL');
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
