// What dstack adds to a trivial job: `dstack run hello` (one busybox `echo hello`) against
// `docker run --rm` of the same image and command, interleaved so both see the same machine noise.
// `hello` is the named workflow, so it always runs (no cache hit): the whole path — snapshot,
// fingerprint, store, container, artifacts — is measured. Target: at most 1.25×.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dstack, image, interleave, ms, save, time } from './lib.mjs';

export async function run({ rounds = 15 } = {}) {
  const project = mkdtempSync(join(tmpdir(), 'dstack-bench-'));
  // Outside the project, or the store's own changes would be part of the code snapshot.
  const home = `${project}-home`;
  mkdirSync(join(project, '.dstack'), { recursive: true });
  writeFileSync(join(project, '.dstack/workflows.yaml'), `workflows:\n  - name: hello\n    image: ${image}\n    commands:\n      - echo hello\n`);
  const env = { ...process.env, DSTACK_HOME: home };
  try {
    execFileSync('docker', ['image', 'inspect', image], { stdio: 'ignore' });
    const { samples, medians } = interleave(rounds, {
      dstackRun: () => time(dstack, ['run', 'hello'], { cwd: project, env }),
      dockerRunRm: () => time('docker', ['run', '--rm', image, 'sh', '-c', 'echo hello']),
    });
    const ratio = medians.dstackRun / medians.dockerRunRm;
    const file = save('overhead', {
      commands: { dstackRun: 'dstack run hello  (image: busybox, commands: [echo hello])', dockerRunRm: `docker run --rm ${image} sh -c 'echo hello'` },
      rounds,
      medianMs: medians,
      ratios: { runVsDockerRun: ratio },
      samplesMs: samples,
    });
    return {
      file,
      rows: [{ name: 'overhead: dstack run (trivial job)', value: ms(medians.dstackRun), baseline: `docker run --rm ${ms(medians.dockerRunRm)}`, ratio, target: '<= 1.25x', ok: ratio <= 1.25 }],
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
