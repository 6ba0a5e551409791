// CLI start-up: `dstack --version` and `dstack ps` over a store of 10,000 runs (20,000 jobs with
// their history and logs), against `node -e 0` (Node's own floor), interleaved. Target: under
// 150 ms absolute. The store is filled once by fill-store.ts and kept (a marker says it is complete).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, dstack, interleave, ms, root, save, time } from './lib.mjs';

const RUNS = 10_000;

function filledHome(log) {
  const home = join(cacheDir, `ps-home-${RUNS}`);
  const marker = join(cacheDir, `ps-home-${RUNS}.filled`);
  if (existsSync(marker)) return home;
  rmSync(home, { recursive: true, force: true });
  mkdirSync(cacheDir, { recursive: true });
  log(`startup: filling a store with ${RUNS} runs (once)…`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/bench/fill-store.ts'), home, String(RUNS)], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('fill-store.ts failed');
  writeFileSync(marker, `${new Date().toISOString()}\n`);
  return home;
}

export async function run({ rounds = 20, log = console.error } = {}) {
  const home = filledHome(log);
  const env = { ...process.env, DSTACK_HOME: home };
  const { samples, medians } = interleave(rounds, {
    version: () => time(dstack, ['--version'], { env }),
    ps: () => time(dstack, ['ps'], { env, cwd: cacheDir }),
    node: () => time(process.execPath, ['-e', '0']),
  });
  const file = save('startup', {
    commands: { version: 'dstack --version', ps: `DSTACK_HOME=${home} dstack ps`, node: 'node -e 0' },
    runsInStore: RUNS,
    rounds,
    medianMs: medians,
    ratios: { versionVsNode: medians.version / medians.node, psVsNode: medians.ps / medians.node },
    samplesMs: samples,
  });
  const baseline = `node -e 0 ${ms(medians.node)}`;
  return {
    file,
    rows: [
      { name: 'startup: dstack --version', value: ms(medians.version), baseline, ratio: medians.version / medians.node, target: '< 150 ms', ok: medians.version < 150 },
      { name: `startup: dstack ps (${RUNS} runs)`, value: ms(medians.ps), baseline, ratio: medians.ps / medians.node, target: '< 150 ms', ok: medians.ps < 150 },
    ],
  };
}
