/**
 * Stopping runs, end to end: Ctrl-C once (graceful) and twice (abort), `kill -9` of the CLI with
 * the container still running, then gone, `dstack stop [-x]` from a second process, and `rm`.
 * After each, no container of the test's home is left.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, docker, runNameOf, sleep, type Background, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

const WORKFLOWS = `workflows:
  - name: graceful
    image: ${IMAGE}
    commands:
      - echo saved-on-stop > kept.txt
      - trap 'echo got TERM; exit 0' TERM
      - echo ready
      - while true; do sleep 0.2; done
    artifacts: [kept.txt]
  - name: stubborn
    image: ${IMAGE}
    commands:
      - trap '' TERM
      - echo ready
      - while true; do sleep 0.2; done
  - name: sleeper
    image: ${IMAGE}
    commands:
      - echo ready
      - sleep 1000
`;

/** A fresh project (and home) per test, so one test's runs never meet another's. */
async function project(): Promise<Project> {
  // A long grace period: when a run ends quickly, it is the signal under test that ended it.
  return createProject({ workflows: WORKFLOWS, env: { DSTACK_STOP_GRACE: '30' } });
}

const runOf = (p: Project, name: string): Promise<PsRunWithJobs> => p.json<PsRunWithJobs>(['ps', name, '--json']);

/**
 * Starts `dstack run WF` in the foreground and waits until the job has printed `ready` (its traps
 * are set) and, unless `untilReady`, until `ps RUN --json` records it running.
 */
async function startRun(p: Project, wf: string, options: { untilReady?: boolean } = {}): Promise<{ bg: Background; name: string }> {
  const bg = p.start(['run', wf]);
  await bg.waitFor((out) => out.includes('ready\n'), 30_000);
  const name = runNameOf(bg.stderr());
  if (!options.untilReady) {
    for (const deadline = Date.now() + 20_000; (await runOf(p, name)).status !== 'running'; await sleep(100)) {
      if (Date.now() > deadline) throw new Error(`run ${name} never recorded running`);
    }
  }
  return { bg, name };
}

test(
  'Ctrl-C once: the container gets SIGTERM, artifacts saved, stopped, exit 130',
  withTimeout(60_000, async () => {
    const p = await project();
    try {
      const { bg, name } = await startRun(p, 'graceful');
      bg.signal('SIGINT');
      const r = await bg.result;
      assert.is(r.exitCode, 130, r.stderr);
      assertNoCrash(r);
      assert.ok(r.stdout.includes('got TERM\n'), r.stdout);
      assert.ok(r.stderr.includes('Stopping gracefully (artifacts are saved); press Ctrl-C again to abort\n'), r.stderr);
      assert.ok(r.stderr.includes(`Run ${name} stopped\n`), r.stderr);
      const run = await runOf(p, name);
      assert.is(run.status, 'stopped');
      assert.equal(
        run.jobs.map((j) => [j.status, j.reason, j.artifacts]),
        [['stopped', 'stopped by user', ['kept.txt']]],
      );
      const logs = await p.run(['logs', name]);
      assert.is(logs.stdout, 'ready\ngot TERM\n');
      assert.equal(await containersOf(p.home), []);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'Ctrl-C twice on a job that ignores SIGTERM: aborted at once, exit 130',
  withTimeout(60_000, async () => {
    const p = await project();
    try {
      const { bg, name } = await startRun(p, 'stubborn');
      const started = Date.now();
      bg.signal('SIGINT');
      await bg.waitFor((_o, err) => err.includes('Stopping gracefully'));
      bg.signal('SIGINT');
      const r = await bg.result;
      assert.is(r.exitCode, 130, r.stderr);
      assertNoCrash(r);
      assert.ok(Date.now() - started < 20_000, 'the abort did not wait for the 30 s grace period');
      assert.ok(r.stderr.includes('Aborting\n'), r.stderr);
      assert.ok(r.stderr.includes(`Run ${name} aborted\n`), r.stderr);
      const run = await runOf(p, name);
      assert.is(run.status, 'aborted');
      assert.equal(
        run.jobs.map((j) => [j.status, j.reason, j.artifacts]),
        [['aborted', 'aborted by user', []]],
      );
      assert.equal(await containersOf(p.home), []);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'kill -9 of the CLI: still running while the container runs; aborted once it is killed, and reaped',
  withTimeout(60_000, async () => {
    const p = await project();
    try {
      // Killed as soon as the job printed: possibly before the CLI recorded it running.
      const { bg, name } = await startRun(p, 'sleeper', { untilReady: true });
      bg.signal('SIGKILL');
      const r = await bg.result;
      assert.is(r.signal, 'SIGKILL');

      const running = await p.json<{ run: string; status: string }[]>(['ps', '--json']);
      assert.equal(running.map((x) => [x.run, x.status]), [[name, 'running']]);
      assert.is((await runOf(p, name)).jobs[0]!.status, 'running');
      const ids = await containersOf(p.home, 'status=running');
      assert.is(ids.length, 1, 'the container outlives the CLI');

      await docker(['kill', ids[0]!]);
      const after = await p.json<{ run: string; status: string }[]>(['ps', '--json']);
      assert.equal(after.map((x) => [x.run, x.status]), [[name, 'aborted']]);
      const job = (await runOf(p, name)).jobs[0]!;
      assert.is(job.status, 'aborted');
      assert.match(String(job.reason), /^the dstack process supervising it \(pid \d+\) died; its container exited with code 137; artifacts were not saved$/);
      assert.equal(await containersOf(p.home), [], 'ps reaped the exited container');

      const logs = await p.run(['logs', name]);
      assert.is(logs.stdout, 'ready\n', 'logs outlive a crash of the CLI');
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'kill -9 of the CLI, then the container removed: ps shows aborted, never running',
  withTimeout(60_000, async () => {
    const p = await project();
    try {
      const { bg, name } = await startRun(p, 'sleeper', { untilReady: true });
      bg.signal('SIGKILL');
      await bg.result;
      const ids = await containersOf(p.home);
      assert.is(ids.length, 1);
      await docker(['rm', '-f', ids[0]!]);
      const runs = await p.json<{ run: string; status: string }[]>(['ps', '--json']);
      assert.equal(runs.map((x) => [x.run, x.status]), [[name, 'aborted']]);
      assert.match(String((await runOf(p, name)).jobs[0]!.reason), /^the dstack process supervising it \(pid \d+\) died and its container is gone$/);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'kill -9 of the CLI, then dstack stop: the orphaned container is removed, the run ends stopped',
  withTimeout(60_000, async () => {
    const p = await project();
    try {
      const { bg, name } = await startRun(p, 'sleeper');
      bg.signal('SIGKILL');
      await bg.result;
      assert.is((await containersOf(p.home, 'status=running')).length, 1);
      const stop = await p.run(['stop', name]);
      assert.is(stop.exitCode, 0, stop.stderr);
      assertNoCrash(stop);
      assert.is(stop.stderr, `Stopping ${name}: the dstack process that ran it is gone; removing its containers here (artifacts are not saved)\nRun ${name} stopped\n`);
      const run = await runOf(p, name);
      assert.equal(
        [run.status, run.jobs[0]!.status, run.jobs[0]!.reason],
        ['stopped', 'stopped', 'stopped by user; its supervising process was gone, so artifacts were not saved'],
      );
      assert.equal(await containersOf(p.home), []);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'dstack stop from a second process; rm refuses while running; stop -a without -y or a TTY refuses',
  withTimeout(60_000, async () => {
    const p = await project();
    try {
      const { bg, name } = await startRun(p, 'graceful');

      const rmRunning = await p.run(['rm', name, '-y']);
      assert.is(rmRunning.exitCode, 2, rmRunning.stderr);
      assertNoCrash(rmRunning);
      assert.is(rmRunning.stderr, `error DS0104: run ${name} is still running\n  = stop it first: dstack stop ${name}\n`);

      const stopAll = await p.run(['stop', '-a']);
      assert.is(stopAll.exitCode, 2, stopAll.stderr);
      assertNoCrash(stopAll);
      assert.is(stopAll.stderr, 'error DS0103: Stop 1 run: refused without confirmation\n  = pass -y to confirm: dstack stop -a -y\n');
      assert.is((await runOf(p, name)).status, 'running', 'a refused stop -a stops nothing');

      const stop = await p.run(['stop', name]);
      assert.is(stop.exitCode, 0, stop.stderr);
      assertNoCrash(stop);
      assert.is(stop.stderr, `Stopping ${name}: waiting for graceful (running) to exit on SIGTERM (SIGKILL after 30 s) and save its artifacts\nRun ${name} stopped\n`);
      const first = await bg.result;
      assert.is(first.exitCode, 130, first.stderr);
      assertNoCrash(first);
      assert.ok(first.stdout.includes('got TERM\n'), first.stdout);
      const run = await runOf(p, name);
      assert.is(run.status, 'stopped');
      assert.equal(run.jobs[0]!.artifacts, ['kept.txt']);
      assert.equal(await containersOf(p.home), []);

      const again = await p.run(['stop', name]);
      assert.is(again.exitCode, 0);
      assert.is(again.stderr, `Run ${name} has already ended (stopped)\n`);

      const rm = await p.run(['rm', name, '-y']);
      assert.is(rm.exitCode, 0, rm.stderr);
      assert.is(rm.stderr, 'Removed 1 run\n');
      const gone = await p.run(['ps', name, '--json']);
      assert.is(gone.exitCode, 2);
      assert.is(gone.stderr, `error DS0101: no run named '${name}'\n  = list runs with \`dstack ps -a\`\n`);
      assert.equal(await p.json(['ps', '-a', '--json']), []);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'dstack stop -x from a second process aborts a job that ignores SIGTERM',
  withTimeout(60_000, async () => {
    const p = await project();
    try {
      const { bg, name } = await startRun(p, 'stubborn');
      const started = Date.now();
      const stop = await p.run(['stop', '-x', name]);
      assert.is(stop.exitCode, 0, stop.stderr);
      assertNoCrash(stop);
      assert.is(stop.stderr, `Aborting ${name}: killing stubborn (running); nothing is saved\nRun ${name} aborted\n`);
      const first = await bg.result;
      assert.is(first.exitCode, 130, first.stderr);
      assertNoCrash(first);
      assert.ok(Date.now() - started < 20_000, 'aborted without waiting for the grace period');
      const run = await runOf(p, name);
      assert.equal([run.status, run.jobs[0]!.status], ['aborted', 'aborted']);
      assert.equal(await containersOf(p.home), []);
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
