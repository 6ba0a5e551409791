/**
 * The Docker engine vanishing or freezing (issue 7 §4), through a fault-injecting socket proxy
 * (test/helpers/docker-proxy.ts) in front of the real engine: a frozen engine before and during a
 * job, an engine killed mid-job. Each ends the run with a coded error, records the cause (not an
 * invented exit code), and the next command that reaches the engine reaps what the run left. Then
 * the sweep by label and job folder, with two homes and two live dstack processes it must not touch.
 *
 * DSTACK_DOCKER_TIMEOUT_SCALE=0.1 makes the engine's times a tenth (a frozen engine is found in
 * seconds); nothing here asserts a time.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, runNameOf, type Background, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { testDocker } from '../helpers/docker.js';
import { startDockerProxy } from '../helpers/docker-proxy.js';
import { withTimeout } from '../helpers/timeout.js';
import { until } from '../helpers/wait.js';

const IMAGE = 'dstack-test/busybox:latest';
const SCALE = { DSTACK_DOCKER_TIMEOUT_SCALE: '0.1' };
const LONG = `workflows:\n  - name: long\n    image: ${IMAGE}\n    commands:\n      - echo job-started\n      - sleep 120\n`;

const jobFolders = (p: Project): string[] => (existsSync(join(p.home, 'jobs')) ? readdirSync(join(p.home, 'jobs')) : []);

/**
 * The job printed and its start was answered (the record says running): the output alone comes
 * through attach before the CLI has read the engine's answer to start.
 */
async function jobRunning(p: Project, bg: Background): Promise<void> {
  await bg.waitFor((out) => out.includes('job-started'));
  await until('the job recorded running', 30_000, async () => (await p.json<{ status: string }[]>(['ps', '--json']))[0]?.status === 'running', 200);
}

/** After the fault: the run ended with the cause, and `ps` (the real engine again) reaps what it left. */
async function assertReapedAfter(p: Project, name: string, reason: RegExp): Promise<void> {
  const detail = await p.json<PsRunWithJobs>(['ps', name, '--json']);
  assert.is(detail.status, 'failed');
  assert.is(detail.jobs[0]!.status, 'failed');
  assert.is(detail.jobs[0]!.exitCode, null, 'nobody saw the container end: no exit code is invented');
  assert.match(String(detail.jobs[0]!.reason), reason);
  assert.equal(await containersOf(p.home), [], 'the container left in the engine is reaped by the next command');
  assert.equal(jobFolders(p), [], 'the job folder is reaped too');
}

test(
  'socket proxy frozen before the run: exit 3, DS0060 names the ping, nothing recorded as running',
  withTimeout(60_000, async () => {
    const proxy = await startDockerProxy();
    const p = await createProject({ workflows: LONG, env: SCALE });
    try {
      proxy.freeze();
      const r = await p.run(['run', 'long'], { env: { DOCKER_HOST: proxy.dockerHost } });
      assert.is(r.exitCode, 3, r.stderr);
      assertNoCrash(r);
      assert.ok(r.stderr.startsWith(`error DS0060: the Docker engine at ${proxy.dockerHost} did not answer in 500 ms (ping)\n`), r.stderr);
      assert.equal(await p.json(['ps', '-a', '--json']), []);
    } finally {
      await proxy.close();
      await p.cleanup();
    }
  }),
);

test(
  'socket proxy frozen mid-job (stops forwarding): the heartbeat ends the run, exit 3 DS0060; ps then reaps the container',
  withTimeout(90_000, async () => {
    const proxy = await startDockerProxy();
    const p = await createProject({ workflows: LONG, env: SCALE });
    try {
      const bg = p.start(['run', 'long'], { env: { DOCKER_HOST: proxy.dockerHost } });
      await jobRunning(p, bg);
      proxy.freeze();
      const r = await bg.result;
      assert.is(r.exitCode, 3, r.stderr);
      assertNoCrash(r);
      assert.match(r.stderr, new RegExp(`^error DS0060: the Docker engine at ${proxy.dockerHost} stopped answering while the job ran: 3 pings in a row went unanswered$`, 'm'), r.stderr);
      assert.equal((await containersOf(p.home)).length, 1, 'the frozen engine could not remove it: it is left for the next command');
      await assertReapedAfter(p, runNameOf(r.stderr), /^DS0060: the Docker engine at .* stopped answering while the job ran/);
    } finally {
      await proxy.close();
      await p.cleanup();
    }
  }),
);

test(
  'socket proxy killed mid-job: exit 3 DS0061 with no invented exit 137; ps then reaps the container',
  withTimeout(90_000, async () => {
    const proxy = await startDockerProxy();
    const p = await createProject({ workflows: LONG, env: SCALE });
    try {
      const bg = p.start(['run', 'long'], { env: { DOCKER_HOST: proxy.dockerHost } });
      await jobRunning(p, bg);
      await proxy.kill();
      const r = await bg.result;
      assert.is(r.exitCode, 3, r.stderr);
      assertNoCrash(r);
      assert.match(r.stderr, new RegExp(`^error DS0061: lost contact with the Docker engine at ${proxy.dockerHost} while job \\S+ ran \\(`, 'm'), r.stderr);
      await assertReapedAfter(p, runNameOf(r.stderr), /^DS0061: lost contact with the Docker engine/);
    } finally {
      await proxy.close();
      await p.cleanup();
    }
  }),
);

test(
  'two homes, two live runs: a sweep in home A removes A\'s unrecorded container and stray folder, never a live run\'s',
  withTimeout(120_000, async () => {
    const a = await createProject({ workflows: LONG });
    const b = await createProject({ workflows: LONG });
    const bgA = a.start(['run', 'long']);
    const bgB = b.start(['run', 'long']);
    let stray: string | undefined;
    try {
      await Promise.all([bgA.waitFor((out) => out.includes('job-started')), bgB.waitFor((out) => out.includes('job-started'))]);
      // What a dstack killed between create and record leaves: a container only its labels name, and a folder.
      stray = (await testDocker().createContainer({ Image: IMAGE, Cmd: ['true'], Labels: { 'dstack.home': a.home, 'dstack.job': 'gone-run-1/x' } })).Id;
      await mkdir(join(a.home, 'jobs', 'gone-run-1_x', 'workflow'), { recursive: true });
      const ps = await a.run(['ps']);
      assert.is(ps.exitCode, 0, ps.stderr);
      assertNoCrash(ps);
      assert.ok(ps.stderr.includes(`Removed container ${stray.slice(0, 12)} (local), left behind: its job gone-run-1/x is not in this dstack home\n`), ps.stderr);
      assert.equal(await containersOf(a.home, 'status=running'), (await containersOf(a.home)), 'only the live run\'s container is left in A');
      assert.is((await containersOf(a.home)).length, 1);
      assert.is((await containersOf(b.home)).length, 1, 'home B\'s live container is untouched');
      assert.equal(jobFolders(a).length, 1, 'the stray folder is gone, the live job\'s is kept');
      assert.ok(!jobFolders(a).includes('gone-run-1_x'));
      // And the live runs go on: both are still running, and end when asked.
      bgA.signal('SIGINT');
      bgB.signal('SIGINT');
      const [ra, rb] = await Promise.all([bgA.result, bgB.result]);
      assert.is(ra.exitCode, 130, ra.stderr);
      assert.is(rb.exitCode, 130, rb.stderr);
    } finally {
      bgA.signal('SIGKILL');
      bgB.signal('SIGKILL');
      if (stray) await testDocker().removeContainer(stray);
      await a.cleanup();
      await b.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
