// Saving and restoring an environment kept as an artifact outside /workflow (issue 12): see
// env-driver.ts (run under tsx). Needs dstack-test/venv (`scripts/build-images.sh venv`).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { median, ms, root, save } from './lib.mjs';

export async function run({ rounds = 3 } = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/bench/env-driver.ts'), String(rounds)], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`env-driver.ts failed:\n${r.stdout}${r.stderr}`);
  const f = JSON.parse(r.stdout.trim().split('\n').at(-1));
  const m = (k) => median(f.samples.map((s) => s[k]));
  const file = save('env', { ...f, medians: { first: m('firstMs'), again: m('againMs'), restore: m('restoreMs'), dockerCp: m('dockerCpMs') } });
  const what = `${(f.size / 1e6).toFixed(1)} MB, ${f.files} files`;
  return {
    file,
    rows: [
      { name: `env: save /opt/venv, new to the store (${what})`, value: ms(m('firstMs')), baseline: `docker cp ${ms(m('dockerCpMs'))}`, ratio: m('firstMs') / m('dockerCpMs'), target: '-' },
      { name: 'env: save it again (all stored already)', value: ms(m('againMs')), baseline: `docker cp ${ms(m('dockerCpMs'))}`, ratio: m('againMs') / m('dockerCpMs'), target: '-' },
      { name: 'env: restore it into a new container', value: ms(m('restoreMs')), baseline: `docker cp ${ms(m('dockerCpMs'))}`, ratio: m('restoreMs') / m('dockerCpMs'), target: '-' },
    ],
  };
}
