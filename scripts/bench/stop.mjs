// `dstack stop` of a plain shell job (issue 8: "goal under 2 s with the default grace"): a detached
// run whose job writes an artifact and then sleeps 600 s, stopped once `ps` says it is running. The
// time is the whole `dstack stop RUN` command: SIGTERM to the job, its artifacts saved, the run
// recorded `stopped`. Before the container had an init, the shell as PID 1 ignored SIGTERM and every
// stop took the whole grace period (10 s) and then SIGKILL. Baseline, in the same rounds: `docker
// stop` (same grace) of `docker run -d --init` with the same shell and sleep.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dstack, image, median, save } from './lib.mjs';

const GRACE_S = 10; // dstack's default (DSTACK_STOP_GRACE unset) and docker stop's
const SCRIPT = 'mkdir -p out && echo kept > out/kept.txt\necho ready\nsleep 600';

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const since = (t) => Number(process.hrtime.bigint() - t) / 1e6;

function waitRunning(name, opts) {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
    const run = JSON.parse(sh(dstack, ['ps', name, '--json'], opts));
    if (run.jobs.every((j) => j.status === 'running')) return;
    spawnSync('sleep', ['0.1']);
  }
  throw new Error(`run ${name} was never running`);
}

function dstackRound(opts) {
  const name = sh(dstack, ['run', 'sleeper', '-d'], opts).trim();
  waitRunning(name, opts);
  const t = process.hrtime.bigint();
  sh(dstack, ['stop', name], opts);
  const took = since(t);
  const run = JSON.parse(sh(dstack, ['ps', name, '--json'], opts));
  const job = run.jobs[0];
  // A stop that had to SIGKILL (137) or lost the artifact is no graceful stop, however fast.
  const graceful = run.status === 'stopped' && job.exitCode !== 137 && job.artifacts.includes('out/kept.txt');
  return { ms: took, graceful, outcome: `${run.status}, exit ${job.exitCode}, artifacts [${job.artifacts}]` };
}

function dockerRound() {
  const id = sh('docker', ['run', '-d', '--init', image, 'sh', '-c', SCRIPT]).trim();
  try {
    // `ready` in its output: the shell runs its script.
    for (const deadline = Date.now() + 30_000; !sh('docker', ['logs', id]).includes('ready'); spawnSync('sleep', ['0.05'])) {
      if (Date.now() > deadline) throw new Error('docker container never printed ready');
    }
    const t = process.hrtime.bigint();
    sh('docker', ['stop', '-t', String(GRACE_S), id]);
    return since(t);
  } finally {
    spawnSync('docker', ['rm', '-f', id], { stdio: 'ignore' });
  }
}

export async function run({ rounds = 5 } = {}) {
  const project = mkdtempSync(join(tmpdir(), 'dstack-bench-stop-'));
  const home = `${project}-home`;
  mkdirSync(join(project, '.dstack'), { recursive: true });
  const commands = SCRIPT.split('\n').map((c) => `      - ${c}\n`).join('');
  writeFileSync(join(project, '.dstack/workflows.yaml'), `workflows:\n  - name: sleeper\n    image: ${image}\n    commands:\n${commands}    artifacts: [out]\n`);
  const env = { ...process.env, DSTACK_HOME: home };
  delete env.DSTACK_STOP_GRACE;
  const opts = { cwd: project, env };
  try {
    execFileSync('docker', ['image', 'inspect', image], { stdio: 'ignore' });
    const samples = { dstackStop: [], dockerStopInit: [] };
    const outcomes = [];
    for (let i = 0; i < rounds; i++) {
      const r = dstackRound(opts);
      samples.dstackStop.push(r.ms);
      outcomes.push(r);
      samples.dockerStopInit.push(dockerRound());
    }
    const graceful = outcomes.every((o) => o.graceful);
    const medians = { dstackStop: median(samples.dstackStop), dockerStopInit: median(samples.dockerStopInit) };
    const file = save('stop', {
      commands: {
        dstackStop: `dstack stop RUN  (a detached run: ${SCRIPT.replace(/\n/g, '; ')}; artifacts: [out]; grace ${GRACE_S} s)`,
        dockerStopInit: `docker stop -t ${GRACE_S} of docker run -d --init ${image} sh -c '${SCRIPT.replace(/\n/g, '; ')}'`,
      },
      rounds,
      medianMs: medians,
      ratios: { stopVsDockerStop: medians.dstackStop / medians.dockerStopInit },
      samplesMs: samples,
      outcomes: outcomes.map((o) => o.outcome),
    });
    const s = (x) => `${(x / 1000).toFixed(2)} s`;
    return {
      file,
      rows: [
        {
          name: `stop: dstack stop of a sleeping shell job (grace ${GRACE_S} s)`,
          value: `${s(medians.dstackStop)}${graceful ? '' : ` (${outcomes.find((o) => !o.graceful).outcome})`}`,
          baseline: `docker stop (--init) ${s(medians.dockerStopInit)}`,
          ratio: medians.dstackStop / medians.dockerStopInit,
          target: '< 2 s, stopped, not 137',
          ok: graceful && medians.dstackStop < 2000,
        },
      ],
    };
  } finally {
    spawnSync('docker', ['ps', '-aq', '--filter', `label=dstack.home=${home}`], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .forEach((id) => spawnSync('docker', ['rm', '-f', id]));
    rmSync(project, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
}
