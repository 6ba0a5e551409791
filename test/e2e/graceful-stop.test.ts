/**
 * A graceful stop that is graceful (issue 8): the job runs under an init, so SIGTERM reaches a plain
 * shell job that sets no trap, and the program its shell waits for, instead of being dropped by a
 * shell that is PID 1 until SIGKILL (exit 137) after the grace. The grace here is 30 s: a job that
 * ended otherwise than by the signal under test would show exit 137. How long a stop takes is
 * measured in scripts/bench (stop), not here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, runNameOf, sleep, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

const WORKFLOWS = `workflows:
  - name: plain
    image: ${IMAGE}
    commands:
      - mkdir -p out && echo kept > out/kept.txt
      - echo ready
      - sleep 600
    artifacts: [out]
  - name: nested
    image: ${IMAGE}
    commands:
      - trap 'echo shell-got-TERM' TERM
      - mkdir -p out
      - sh -c 'trap "echo saved-by-child > out/child.txt; exit 0" TERM; echo ready; while :; do sleep 0.1; done'
    artifacts: [out]
`;

const project = (): Promise<Project> => createProject({ workflows: WORKFLOWS, env: { DSTACK_STOP_GRACE: '30' } });
const runOf = (p: Project, name: string): Promise<PsRunWithJobs> => p.json<PsRunWithJobs>(['ps', name, '--json']);

async function untilRunning(p: Project, name: string): Promise<void> {
  for (const deadline = Date.now() + 30_000; (await runOf(p, name)).jobs[0]?.status !== 'running'; await sleep(100)) {
    if (Date.now() > deadline) throw new Error(`run ${name} never recorded running`);
  }
  // Running is recorded once the container started; `ready` says the shell runs its script.
  for (const deadline = Date.now() + 30_000; !(await p.run(['logs', name])).stdout.includes('ready\n'); await sleep(100)) {
    if (Date.now() > deadline) throw new Error(`run ${name} never printed ready`);
  }
}

test(
  'dstack stop of a detached plain shell job (no trap): stopped, artifacts saved, exit 143 not 137; stop says what it waits for',
  withTimeout(90_000, async () => {
    const p = await project();
    let name = '';
    try {
      const r = await p.run(['run', 'plain', '-d']);
      assert.is(r.exitCode, 0, r.stderr);
      name = r.stdout.trim();
      await untilRunning(p, name);
      const stop = await p.run(['stop', name]);
      assert.is(stop.exitCode, 0, stop.stderr);
      assertNoCrash(stop);
      assert.is(stop.stderr, `Stopping ${name}: waiting for plain (running) to exit on SIGTERM (SIGKILL after 30 s) and save its artifacts\nRun ${name} stopped\n`);
      const run = await runOf(p, name);
      assert.equal(
        [run.status, run.jobs.map((j) => [j.status, j.exitCode, j.reason, j.artifacts])],
        ['stopped', [['stopped', 143, 'stopped by user', ['out/kept.txt']]]],
      );
      // No terminal behind a detached run: its log names the command that aborts, not Ctrl-C.
      const log = readFileSync(join(p.home, 'runs', name, 'supervisor.log'), 'utf8');
      assert.ok(log.includes(`Stopping gracefully (artifacts are saved); run \`dstack stop -x ${name}\` to abort\n`), log);
      assert.not.ok(log.includes('Ctrl-C'), log);
      assert.equal(await containersOf(p.home), []);
    } finally {
      if (name) await p.run(['stop', '-x', name]);
      await p.cleanup();
    }
  }),
);

test(
  'Ctrl-C reaches the program the shell waits for (the whole process group), which saves before it exits',
  withTimeout(90_000, async () => {
    const p = await project();
    try {
      const bg = p.start(['run', 'nested']);
      await bg.waitFor((out) => out.includes('ready\n'), 30_000);
      const name = runNameOf(bg.stderr());
      await untilRunning(p, name);
      bg.signal('SIGINT');
      const r = await bg.result;
      assert.is(r.exitCode, 130, r.stderr);
      assertNoCrash(r);
      assert.ok(r.stderr.includes('Stopping gracefully (artifacts are saved); press Ctrl-C again to abort\n'), r.stderr);
      assert.is(r.stdout, 'ready\nshell-got-TERM\n');
      const run = await runOf(p, name);
      // The shell's own trap waits for its child; only a signal to the group reaches the child.
      assert.equal(
        [run.status, run.jobs.map((j) => [j.status, j.exitCode, j.artifacts])],
        ['stopped', [['stopped', 0, ['out/child.txt']]]],
      );
      const cp = await p.run(['cp', name, 'out/child.txt', join(p.dir, 'child.txt')]);
      assert.is(cp.exitCode, 0, cp.stderr);
      assert.is(readFileSync(join(p.dir, 'child.txt'), 'utf8'), 'saved-by-child\n');
      assert.equal(await containersOf(p.home), []);
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
