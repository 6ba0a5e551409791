/**
 * Claims are taken atomically across processes: of six processes claiming one fingerprint at the
 * same moment on one home, exactly one takes it and the five others see that one as the holder.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openStore } from '../../src/engine/store/sqlite.js';
import { jobSpec } from '../helpers/spec.js';
import { withTimeout } from '../helpers/timeout.js';

const root = new URL('../..', import.meta.url).pathname;
const worker = join(root, 'test/helpers/claim-worker.ts');

function runWorker(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', worker, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`worker exited with ${code}:\n${err}`))));
  });
}

test(
  'six processes claim one fingerprint at once: exactly one takes it, the others name it as the holder',
  withTimeout(60_000, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dstack-claims-conc-'));
    try {
      const home = join(dir, 'home');
      const store = openStore(home);
      const jobs = [0, 1, 2, 3, 4, 5].map(() => {
        const { run, jobs: [job] } = store.runs.createRun({ workflow: 'shared', owner: 'o', backend: 'local', repo: { root: '/p', isGit: false }, args: [], jobs: [{ spec: jobSpec({ workflow: 'shared', image: 'img' }), deps: [] }] });
        return { job: job!.id, run: run.name };
      });
      store.close();
      const startAt = Date.now() + 2500; // past tsx start-up, so the workers really claim together
      const results = await Promise.all(jobs.map((j) => runWorker([home, j.job, j.run, String(startAt)])));
      const winners = jobs.filter((_, i) => results[i] === 'taken').map((j) => j.job);
      assert.is(winners.length, 1, results.join('\n'));
      assert.equal(results.filter((r) => r !== 'taken'), Array(5).fill(`held by ${winners[0]}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test.run();
