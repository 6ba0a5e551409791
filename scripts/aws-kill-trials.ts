// Seeded kill -9 trials of a remote run (issue 10, "Bars": 0 instances left after 25 trials).
// Each trial starts `dstack run job --remote` (a busybox job that prints, saves an artifact and
// sleeps a little), SIGKILLs the CLI at a random moment of its life — before the launch, between
// RunInstances and the record, while the instance boots, mid-job, while artifacts come back — then
// runs one `dstack ps` (the next command that talks to AWS) and counts the instances still running
// in moto once the instance watcher has caught up. moto is EC2, the watcher plays the instances.
//
// Usage: node --import tsx scripts/aws-kill-trials.ts [TRIALS=25] [SEED=1] [MAX_DELAY_MS=40000]
// Prints one line per trial and a closing summary; exits 1 if any instance was left.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { liveInstances, motoClient, startInstanceWatcher, sweepInstanceContainers } from '../test/helpers/instances.js';
import { prng } from '../test/helpers/kill-trials.js';
import { motoEnv, startMoto } from '../test/helpers/moto.js';

const root = new URL('..', import.meta.url).pathname;
const [trials, seed, maxDelay] = [Number(process.argv[2] ?? 25), Number(process.argv[3] ?? 1), Number(process.argv[4] ?? 40_000)];


function dstack(args: string[], cwd: string, env: NodeJS.ProcessEnv, killAfterMs?: number): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'bin/dstack'), ...args], { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

const random = prng(seed);
const moto = await startMoto();
const watcher = await startInstanceWatcher({ endpoint: moto.endpoint });
const ec2 = motoClient(moto.endpoint);
const project = await mkdtemp(join(tmpdir(), 'dstack-kill-trials-'));
const home = `${project}-home`;
const env = { ...process.env, ...motoEnv(moto.endpoint), DSTACK_HOME: home, DSTACK_INSTANCE_ADDRESS_MAP: watcher.mapPath };
let leftTotal = 0;
try {
  await mkdir(join(project, '.dstack'), { recursive: true });
  await writeFile(
    join(project, '.dstack/workflows.yaml'),
    'workflows:\n  - name: job\n    image: dstack-test/busybox:latest\n    commands:\n      - echo started\n      - mkdir -p out && echo x > out/x.txt\n      - sleep 5\n    artifacts: [out]\n',
  );
  const cfg = await dstack(['config', 'aws', '--name', 'trials', '--region', 'us-east-1', '--bucket', 'dstack-trials', '--ssh-cidr', '127.0.0.1/32'], project, env);
  if (cfg.code !== 0) throw new Error(cfg.stderr);
  for (let i = 1; i <= trials; i++) {
    const delay = Math.round(random() * maxDelay);
    const r = await dstack(['run', 'job', '--remote'], project, env, delay);
    // ps ends a dead run's instance by reconciling the run (silently: the run's status says it), or by its sweep.
    const before = (await liveInstances(ec2)).length;
    await dstack(['ps'], project, env);
    const terminated = before - (await liveInstances(ec2)).length;
    // The watcher removes a terminated instance's container on its next look at moto.
    const deadline = Date.now() + 60_000;
    let left = await liveInstances(ec2);
    while (left.length && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 250));
      left = await liveInstances(ec2);
    }
    leftTotal += left.length;
    const how = r.signal ? `killed after ${delay} ms` : `ended by itself (exit ${r.code}) before ${delay} ms`;
    console.log(`trial ${String(i).padStart(2)}: ${how}; running when killed ${before}, ended by ps ${terminated}; left running: ${left.length}`);
  }
} finally {
  ec2.destroy();
  await watcher.stop();
  await sweepInstanceContainers();
  await moto.stop();
  await rm(project, { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
}
console.log(`${trials} trials (seed ${seed}, kill within ${maxDelay} ms): ${leftTotal} instances left`);
process.exit(leftTotal === 0 ? 0 : 1);
