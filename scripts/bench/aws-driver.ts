// The AWS figures (issue 10, "Bars"), run by aws.mjs under tsx: moto as EC2 and the tests' instance
// watcher playing each instance (test/helpers), the built CLI as a user runs it.
//
// overhead: `dstack run hello --remote` (busybox `echo hello`), rounds times. For each round, the
// moment the instance became reachable is when its sshd first answered on its mapped loopback port
// (polled here every 20 ms); dstack's overhead on top of that is the rest of the wall time: SSH,
// the bootstrap wait, Docker, staging, the job, artifacts back, terminate. Bar: under 10 s.
// The team bucket the remote names exists, so runs record to it as a team's do.
// mnist: the wall time of fixtures/mnist `train-mnist --remote` (two jobs, two instances), once.
//
// Usage: node --import tsx scripts/bench/aws-driver.ts ROUNDS [mnist]   → JSON on stdout
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { liveInstances, motoClient, startInstanceWatcher } from '../../test/helpers/instances.js';
import { motoEnv, startMoto } from '../../test/helpers/moto.js';
import { createBucket, testS3Client } from '../../test/helpers/s3.js';

const root = new URL('../..', import.meta.url).pathname;
const rounds = Number(process.argv[2] ?? 5);
const withMnist = process.argv.includes('mnist');

const banner = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.once('data', (d: Buffer) => done(d.toString('latin1').startsWith('SSH-')));
    s.once('error', () => done(false));
    setTimeout(() => done(false), 500).unref();
  });

function dstack(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'bin/dstack'), ...args], { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('exit', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

const moto = await startMoto();
const watcher = await startInstanceWatcher({ endpoint: moto.endpoint, intervalMs: 50 });
const ec2 = motoClient(moto.endpoint);
const project = await mkdtemp(join(tmpdir(), 'dstack-bench-aws-'));
const home = `${project}-home`;
const env = { ...process.env, ...motoEnv(moto.endpoint), DSTACK_HOME: home, DSTACK_INSTANCE_ADDRESS_MAP: watcher.mapPath };
try {
  // The team bucket exists, as for a user who configured it: runs record to it as they go.
  const s3 = testS3Client(moto.endpoint);
  await createBucket(s3, 'dstack-bench');
  s3.destroy();
  await mkdir(join(project, '.dstack'), { recursive: true });
  await writeFile(join(project, '.dstack/workflows.yaml'), 'workflows:\n  - name: hello\n    image: dstack-test/busybox:latest\n    commands:\n      - echo hello\n');
  const cfg = await dstack(['config', 'aws', '--name', 'bench', '--region', 'us-east-1', '--bucket', 'dstack-bench', '--ssh-cidr', '127.0.0.1/32'], project, env);
  if (cfg.code !== 0) throw new Error(cfg.stderr);
  const samples: { wallMs: number; reachableMs: number; overheadMs: number }[] = [];
  for (let i = 0; i < rounds; i++) {
    const before = new Set(watcher.seen.keys());
    const started = performance.now();
    let reachable: number | undefined;
    const run = dstack(['run', 'hello', '--remote'], project, env);
    let ended = false;
    void run.then(() => (ended = true));
    while (!ended && reachable === undefined) {
      const fresh = [...watcher.seen.values()].find((w) => !before.has(w.id));
      if (fresh && (await banner(fresh.port))) reachable = performance.now();
      else await new Promise((r) => setTimeout(r, 20));
    }
    const r = await run;
    const end = performance.now();
    if (r.code !== 0 || reachable === undefined) throw new Error(`round ${i}: exit ${r.code}\n${r.stderr}`);
    samples.push({ wallMs: end - started, reachableMs: reachable - started, overheadMs: end - reachable });
  }
  let mnistMs: number | undefined;
  if (withMnist) {
    const dir = await mkdtemp(join(tmpdir(), 'dstack-bench-mnist-'));
    await cp(join(root, 'fixtures/mnist'), dir, { recursive: true });
    const started = performance.now();
    const r = await dstack(['run', 'train-mnist', '--remote'], dir, env);
    mnistMs = performance.now() - started;
    await rm(dir, { recursive: true, force: true });
    if (r.code !== 0) throw new Error(`mnist: exit ${r.code}\n${r.stderr}`);
  }
  const left = await liveInstances(ec2);
  process.stdout.write(`${JSON.stringify({ rounds, samples, mnistMs, instancesLeft: left.length })}\n`);
} finally {
  ec2.destroy();
  await watcher.stop();
  await moto.stop();
  await rm(project, { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
}
