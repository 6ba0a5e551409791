// The AWS bars (issue 10): dstack's overhead on top of an instance becoming reachable, for a
// trivial job (target: under 10 s; SkyPilot's launch on AWS takes minutes), and the wall time of
// fixtures/mnist `train-mnist --remote`. EC2 is moto and each instance an SSH container
// (aws-driver.ts, under tsx): the figures are dstack's own path, not EC2's boot time.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { median, ms, root, save } from './lib.mjs';

export async function run({ rounds = 5 } = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/bench/aws-driver.ts'), String(rounds), 'mnist'], { cwd: root, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`aws-driver.ts failed:\n${r.stdout}${r.stderr}`);
  const figures = JSON.parse(r.stdout.trim().split('\n').at(-1));
  const overhead = median(figures.samples.map((s) => s.overheadMs));
  const wall = median(figures.samples.map((s) => s.wallMs));
  const file = save('aws', { ...figures, medianOverheadMs: overhead, medianWallMs: wall });
  return {
    file,
    rows: [
      { name: 'aws: overhead after the instance is reachable (trivial job, moto)', value: ms(overhead), baseline: `wall ${ms(wall)}`, ratio: overhead / 10_000, target: '< 10 s', ok: overhead < 10_000 },
      { name: 'aws: fixtures/mnist train-mnist --remote (moto, 2 instances)', value: ms(figures.mnistMs), baseline: '-', ratio: 0, target: '-', ok: figures.instancesLeft === 0 },
    ],
  };
}
