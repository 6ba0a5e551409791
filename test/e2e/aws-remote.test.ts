/**
 * `dstack run --remote` on AWS, end to end over the built binary (issue 10): moto plays EC2 behind
 * the fault proxy (tests named "fault proxy" use its faults), the instance watcher plays each
 * instance by an SSH host container running the real user-data, and the CLI reaches the containers
 * only through the test-only address map (`DSTACK_INSTANCE_ADDRESS_MAP`) — never the public
 * addresses moto hands out. Each test has its own project and hermetic home; after each, no
 * instance is running in moto and no container is left.
 */
import { cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TerminateInstancesCommand, type EC2Client } from '@aws-sdk/client-ec2';
import { assertNoCrash, containersOf, createProject, runNameOf, sleep, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/ec2-faults.js';
import { liveInstances, motoClient, startInstanceWatcher, sweepInstanceContainers, type InstanceWatcher } from '../helpers/instances.js';
import { motoEnv, startMoto, type Moto } from '../helpers/moto.js';
import { createBucket, testS3Client } from '../helpers/s3.js';
import { withTimeout } from '../helpers/timeout.js';

const FIXTURE = new URL('../../fixtures/mnist', import.meta.url).pathname;
const IMAGE = 'dstack-test/busybox:latest';
const WORKFLOWS = `workflows:
  - name: hello
    image: ${IMAGE}
    commands:
      - echo hello-from-ec2
  - name: sleeper
    image: ${IMAGE}
    commands:
      - echo sleeper-started
      - sleep 1000
  - name: flaky
    image: ${IMAGE}
    commands:
      - echo flaky-started
      - sleep 15
      - echo flaky-finished
  - name: saver
    image: ${IMAGE}
    commands:
      - echo kept > out/kept.txt
      - echo model > /opt/models/m.txt
      - echo saver-started
      - sleep 1000
    artifacts: [out, /opt/models]
  - name: gpu
    image: ${IMAGE}
    commands:
      - echo never
    resources:
      gpu: 1
`;

let moto: Moto;
let proxy: FaultProxy;
let ec2: EC2Client;
let watcher: InstanceWatcher;
const projects: Project[] = [];

test.before(async () => {
  moto = await startMoto();
  proxy = await startFaultProxy(moto.endpoint);
  ec2 = motoClient(moto.endpoint);
});
test.after(async () => {
  ec2.destroy();
  await proxy.close();
  await moto.stop();
});
test.before.each(async () => {
  await moto.reset();
  proxy.clear();
  watcher = await startInstanceWatcher({ endpoint: moto.endpoint });
});
test.after.each(async () => {
  for (const p of projects.splice(0)) await p.cleanup();
  await watcher.stop();
  assert.equal(await liveInstances(ec2), [], 'instances left running in moto');
  assert.is(await sweepInstanceContainers(), 0, 'instance containers left');
});

/** A project whose default remote is the AWS remote `cloud` (moto through the fault proxy). */
async function awsProject(options: { readonly workflows?: string; readonly fixture?: boolean; readonly env?: Record<string, string> } = {}): Promise<Project> {
  const p = await createProject({
    ...(options.fixture ? {} : { workflows: options.workflows ?? WORKFLOWS }),
    env: { ...motoEnv(proxy.endpoint), DSTACK_INSTANCE_ADDRESS_MAP: watcher.mapPath, ...options.env },
  });
  projects.push(p);
  if (options.fixture) await cp(FIXTURE, p.dir, { recursive: true });
  const r = await p.run(['config', 'aws', '--name', 'cloud', '--region', 'us-east-1', '--bucket', 'dstack-test', '--ssh-cidr', '127.0.0.1/32']);
  assert.is(r.exitCode, 0, r.stderr);
  return p;
}

test(
  'fixtures/mnist train-mnist --remote aws: done, the model in the local store, the instances terminated in moto',
  withTimeout(300_000, async () => {
    const p = await awsProject({ fixture: true });
    const started = Date.now();
    const r = await p.run(['run', 'train-mnist', '--remote'], { timeoutMs: 280_000 });
    const ms = Date.now() - started;
    assertNoCrash(r);
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /test accuracy: 0\.\d{4}/);
    assert.match(r.stderr, /mnist-data: launched i-[0-9a-f]+: t3a\.large \(on-demand, us-east-1a, \$0\.0752\/h\), image ubuntu\/images\/hvm-ssd\/ubuntu-jammy-22\.04-amd64-server-20240901\n/);
    const name = runNameOf(r.stderr);
    const run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
    assert.is(run.backend, 'aws:cloud');
    assert.equal(run.jobs.map((j) => [j.workflow, j.status]), [['mnist-data', 'done'], ['train-mnist', 'done']]);
    const ls = await p.run(['ls', name]);
    assert.is(ls.exitCode, 0, ls.stderr);
    assert.match(ls.stdout, /model\//);
    assert.match(ls.stdout, /metrics\.json/);
    const out = join(p.dir, 'metrics-out.json');
    assert.is((await p.run(['cp', name, 'metrics.json', out])).exitCode, 0);
    const metrics = JSON.parse(await readFile(out, 'utf8')) as { accuracy: number };
    assert.ok(metrics.accuracy > 0.9, `accuracy ${metrics.accuracy}`);
    assert.is(watcher.seen.size, 2, 'one instance per job');
    assert.equal(await liveInstances(ec2), []);
    console.log(`    mnist on aws (moto): ${ms} ms`);
  }),
);

test(
  'fault proxy: no capacity anywhere — DS0233 lists the attempts, exit 3, no instance and no record of one left',
  withTimeout(180_000, async () => {
    const p = await awsProject();
    proxy.add({ action: 'RunInstances', fault: 'InsufficientInstanceCapacity' });
    const r = await p.run(['run', 'hello', '--remote'], { timeoutMs: 170_000 });
    assertNoCrash(r);
    assert.is(r.exitCode, 3, r.stderr);
    assert.match(r.stderr, /error DS0233: no instance could be launched in us-east-1; tried \d+ times:\n {2}t3a\.large \(on-demand\) in us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1f: InsufficientInstanceCapacity: We currently do not have sufficient t3a\.large capacity/);
    assert.ok(proxy.calls.filter((c) => c.action === 'RunInstances').length >= 5);
    assert.equal(await liveInstances(ec2), []);
    const run = await p.json<PsRunWithJobs>(['ps', runNameOf(r.stderr), '--json']);
    assert.equal(run.jobs.map((j) => j.status), ['failed']);
  }),
);

test(
  'a bootstrap step failing (a GPU job on an instance without the NVIDIA driver): DS0236 names the step, the instance is terminated',
  withTimeout(180_000, async () => {
    const p = await awsProject();
    const r = await p.run(['run', 'gpu', '--remote'], { timeoutMs: 170_000 });
    assertNoCrash(r);
    assert.is(r.exitCode, 3, r.stderr);
    assert.match(r.stderr, /error DS0236: the bootstrap of the instance at ubuntu@127\.0\.0\.1:\d+ failed: step 'nvidia' failed with status 127\n {2}the boot log ends with:\n/);
    assert.match(r.stderr, /nvidia-smi: command not found/);
    assert.equal(await liveInstances(ec2), []);
  }),
);

test(
  'kill -9 of the CLI mid-job: the next command that talks to AWS (ps) terminates the instance and says why',
  withTimeout(240_000, async () => {
    const p = await awsProject();
    const bg = p.start(['run', 'sleeper', '--remote'], { timeoutMs: 200_000 });
    await bg.waitFor((out) => out.includes('sleeper-started'), 150_000);
    const [id] = await liveInstances(ec2);
    assert.ok(id, 'an instance runs the job');
    bg.signal('SIGKILL');
    await bg.result;
    const ps = await p.run(['ps'], { timeoutMs: 60_000 });
    assertNoCrash(ps);
    assert.is(ps.exitCode, 0, ps.stderr);
    assert.match(ps.stderr, new RegExp(`Terminated ${id} \\(aws:cloud\\): the dstack process that ran \\S+/sleeper \\(pid ${bg.pid}\\) is gone\\n`));
    await watcher.waitGone(id!);
    assert.equal(await liveInstances(ec2), []);
    assert.equal(await containersOf(p.home), []);
  }),
);

test(
  'dstack prune --remote: lists the instances it ended, and exits 0 when there is nothing to end',
  withTimeout(240_000, async () => {
    const p = await awsProject();
    const bg = p.start(['run', 'sleeper', '--remote'], { timeoutMs: 200_000 });
    await bg.waitFor((out) => out.includes('sleeper-started'), 150_000);
    const [id] = await liveInstances(ec2);
    bg.signal('SIGKILL');
    await bg.result;
    const pruned = await p.run(['prune', '--remote'], { timeoutMs: 60_000 });
    assertNoCrash(pruned);
    assert.is(pruned.exitCode, 0, pruned.stderr);
    assert.match(pruned.stdout, new RegExp(`^INSTANCE +REMOTE +STATE +JOB +DETAIL\\n${id} +aws:cloud +running +\\S+/sleeper +t3a\\.large, us-east-1a, up \\d+ min; the dstack process that ran`));
    assert.is(pruned.stderr, 'Terminated 1 instance; 0 instances held by live runs kept\n');
    const again = await p.run(['prune', '--remote', '--json'], { timeoutMs: 60_000 });
    assert.is(again.exitCode, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout), { removed: [], kept: 0, failed: [], unreachable: [] });
    await watcher.waitGone(id!);
  }),
);

test(
  'the dead-man switch: a dstack killed mid-job stops renewing, and the instance shuts itself down and is terminated with nothing else asking',
  withTimeout(240_000, async () => {
    // The switch's first deadline is the SSH wait plus the ttl after boot: both short here.
    const p = await awsProject({ env: { DSTACK_HEARTBEAT_TTL: '6', DSTACK_INSTANCE_SSH_WAIT: '60' } });
    const bg = p.start(['run', 'sleeper', '--remote'], { timeoutMs: 200_000 });
    await bg.waitFor((out) => out.includes('sleeper-started'), 150_000);
    const [id] = await liveInstances(ec2);
    bg.signal('SIGKILL');
    await bg.result;
    // No dstack command runs from here on: only the instance itself can end it.
    await watcher.waitGone(id!, 120_000);
    assert.equal(await liveInstances(ec2), []);
  }),
);

test(
  'dstack stop of a detached plain shell job on an instance: SIGTERM reaches it under the init (exit 143, not 137 after the grace), its artifact folders (one under /opt) were made before it, its artifacts are saved, the instance terminated',
  withTimeout(240_000, async () => {
    const p = await awsProject({ env: { DSTACK_STOP_GRACE: '60' } });
    const r = await p.run(['run', 'saver', '--remote', '-d'], { timeoutMs: 60_000 });
    assertNoCrash(r);
    assert.is(r.exitCode, 0, r.stderr);
    const name = r.stdout.trim();
    for (const deadline = Date.now() + 180_000; !(await p.run(['logs', name])).stdout.includes('saver-started\n'); await sleep(500)) {
      if (Date.now() > deadline) throw new Error(`run ${name} never printed saver-started`);
    }
    const stop = await p.run(['stop', name], { timeoutMs: 120_000 });
    assertNoCrash(stop);
    assert.is(stop.exitCode, 0, stop.stderr);
    assert.match(stop.stderr, new RegExp(`^Stopping ${name}: waiting for saver \\(running\\) to exit on SIGTERM \\(SIGKILL after 60 s\\) and save its artifacts\n`));
    const run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
    assert.equal(
      [run.status, run.jobs.map((j) => [j.status, j.exitCode, j.artifacts])],
      ['stopped', [['stopped', 143, ['/opt/models/m.txt', 'out/kept.txt']]]],
    );
    const out = join(p.dir, 'kept.txt');
    assert.is((await p.run(['cp', name, 'out/kept.txt', out])).exitCode, 0);
    assert.is(await readFile(out, 'utf8'), 'kept\n');
    // Outside /workflow too, saved from the instance's container through its engine's archive API.
    const model = join(p.dir, 'm.txt');
    assert.is((await p.run(['cp', name, '/opt/models/m.txt', model])).exitCode, 0);
    assert.is(await readFile(model, 'utf8'), 'model\n');
    for (const deadline = Date.now() + 60_000; (await liveInstances(ec2)).length > 0; await sleep(500)) {
      if (Date.now() > deadline) throw new Error('the instance outlived its stopped run');
    }
  }),
);

test(
  'fault proxy: the spot instance taken back mid-job (EC2\'s state reason) with --retry 1: the job runs again on a new instance and ends done',
  withTimeout(300_000, async () => {
    const p = await awsProject();
    const bg = p.start(['run', 'flaky', '--remote', '--retry', '1'], { timeoutMs: 280_000 });
    await bg.waitFor((out) => out.includes('flaky-started'), 150_000);
    const [first] = await liveInstances(ec2);
    proxy.spotInterrupted(first!);
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [first!] }));
    const r = await bg.result;
    assertNoCrash(r);
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /\n {2}flaky: interrupted — [^\n]*; running again on a new machine \(1 of 1\)\n/);
    assert.is(r.stdout, 'flaky-started\nflaky-started\nflaky-finished\n');
    const run = await p.json<PsRunWithJobs>(['ps', runNameOf(r.stderr), '--json']);
    assert.equal([run.status, run.jobs.map((j) => [j.workflow, j.status])], ['done', [['flaky', 'done']]]);
    assert.is(watcher.seen.size, 2, 'a new instance for the second attempt');
    assert.equal(await liveInstances(ec2), []);
  }),
);

test('the trivial job: hello on EC2, its instance terminated after, the run recorded in the remote\'s --bucket for the team', withTimeout(180_000, async () => {
  const s3 = testS3Client(moto.endpoint);
  try {
    await createBucket(s3, 'dstack-test');
    const p = await awsProject();
    const r = await p.run(['run', 'hello', '--remote'], { timeoutMs: 170_000 });
    assertNoCrash(r);
    assert.is(r.exitCode, 0, r.stderr);
    assert.is(r.stdout, 'hello-from-ec2\n');
    assert.not.match(r.stderr, /warning: the team bucket/);
    assert.equal(await liveInstances(ec2), []);
    // The AWS remote's bucket is the team's: the run is there with no push, its log too.
    const team = await p.json<{ run: string; backend: string; status: string }[]>(['ps', '--remote', '--json']);
    assert.equal(team.map((x) => [x.run, x.backend, x.status]), [[runNameOf(r.stderr), 'aws:cloud', 'done']]);
  } finally {
    s3.destroy();
  }
}));

test('sweep: no instance container and no job container of this process is left', withTimeout(30_000, async () => {
  assert.is(await sweepInstanceContainers(), 0);
}));

test.run();
