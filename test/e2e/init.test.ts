/**
 * `dstack init`, end to end: a starter project in an empty folder that plans at once, and a second
 * init that refuses to overwrite.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

test(
  'init writes the starter files; run train --dry-run plans them; a second init is DS0105',
  withTimeout(30_000, async () => {
    const p = await createProject();
    try {
      const r = await p.run(['init']);
      assert.is(r.exitCode, 0, r.stderr);
      assertNoCrash(r);
      assert.is(r.stderr, 'Wrote .dstack/workflows.yaml and .dstack/variables.yaml; try `dstack run train --dry-run`\n');
      assert.ok(existsSync(join(p.dir, '.dstack', 'workflows.yaml')));
      assert.ok(readFileSync(join(p.dir, '.dstack', 'variables.yaml'), 'utf8').includes('epochs: 3'));

      const plan = await p.run(['run', 'train', '--dry-run']);
      assert.is(plan.exitCode, 0, plan.stderr);
      assertNoCrash(plan);
      assert.match(plan.stdout, /^1\. prepare {2}runs\n/);
      assert.match(plan.stdout, /\n2\. train {2}runs\n/);
      assert.ok(plan.stdout.includes('echo "epochs=3" > result.txt'), plan.stdout);
      assert.ok(plan.stdout.includes('   after:    prepare\n'), plan.stdout);

      const json = JSON.parse((await p.run(['run', 'train', '--dry-run', '--json', '--epochs', '7'])).stdout) as { jobs: { workflow: string }[]; overrides: Record<string, string> };
      assert.equal(json.jobs.map((j) => j.workflow), ['prepare', 'train']);
      assert.equal(json.overrides, { epochs: '7' });

      const again = await p.run(['init']);
      assert.is(again.exitCode, 2, again.stderr);
      assertNoCrash(again);
      assert.is(again.stderr, `error DS0105: ${join(p.dir, '.dstack', 'workflows.yaml')} already exists\n  = edit it, or pass --force to overwrite\n`);
      assert.equal(await containersOf(p.home), []);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'init in a subfolder of no project, then run from a folder below it finds the project',
  withTimeout(30_000, async () => {
    const p = await createProject({ files: { 'src/deep/keep.txt': 'x' } });
    try {
      assert.is((await p.run(['init'])).exitCode, 0);
      const plan = await p.run(['run', 'prepare', '--dry-run'], { cwd: join(p.dir, 'src', 'deep') });
      assert.is(plan.exitCode, 0, plan.stderr);
      assert.match(plan.stdout, /^1\. prepare {2}runs\n/);
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
