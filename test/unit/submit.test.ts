/**
 * From a command line to jobs: run.args are the named workflow's only, variable overrides reach the
 * jobs that declare them, a job records only the variables it reads, and a run refuses (before
 * anything starts) artifacts it cannot save yet.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import type { RunWriter, TagReader } from '../../src/engine/store/types.js';
import { prepareRun } from '../../src/engine/submit.js';
import type { Project } from '../../src/engine/types.js';
import { loadProject } from '../../src/engine/workflow/load.js';
import { withTimeout } from '../helpers/timeout.js';

const roots: string[] = [];
async function load(files: Record<string, string>): Promise<Project> {
  const root = mkdtempSync(join(tmpdir(), 'dstack-submit-'));
  roots.push(root);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return loadProject(root);
}
/** Planning reads tags only; recording is not reached by the cases that use this. */
const store = { tags: { getTag: () => undefined }, runs: { reserveName: () => 'wet-mangust-1' } } as unknown as { runs: RunWriter; tags: TagReader };
const t = (name: string, fn: () => Promise<void>): void => test(name, withTimeout(5000, fn));

const FILES = {
  '.dstack/variables.yaml': 'variables:\n  global:\n    seed: 1\n    unused: x\n  prep:\n    rows: 10\n',
  '.dstack/workflows.yaml': `workflows:
  - name: prep
    commands:
      - echo \${{ rows }} \${{ run.args }}
  - name: train
    deps: [prep]
    commands:
      - echo \${{ seed }} \${{ run.args }}
  - name: env
    commands: [echo]
    artifacts: [/opt/venv, out]
  - name: uses-env
    deps: [env]
    commands: [echo]
`,
};

t('run.args reach the named workflow only; overrides reach every job that declares them', async () => {
  const project = await load(FILES);
  const prepared = prepareRun(store, { project, target: 'train', tokens: ['--rows', '20', '--seed', '3', 'extra', '-v'], hostEnv: {} }, 'wet-mangust-1');
  const [prep, train] = prepared.jobs;
  assert.equal([prep!.workflow, prep!.spec.args, prep!.spec.variables], ['prep', [], { rows: '20' }]);
  assert.equal([train!.workflow, train!.spec.args, train!.spec.variables], ['train', ['extra', '-v'], { seed: '3' }]);
  assert.match(prep!.spec.command!.at(-1)!, /^echo 20 $/);
  assert.match(train!.spec.command!.at(-1)!, /^echo 3 extra -v$/);
  assert.equal(prepared.args, ['extra', '-v']);
});

t('a near miss of a declared variable or a dstack flag is refused before anything is planned further', async () => {
  const project = await load(FILES);
  const attempt = (tokens: string[]): DstackError => {
    try {
      prepareRun(store, { project, target: 'train', tokens, reservedFlags: ['--dry-run'], hostEnv: {} }, 'x');
    } catch (e) {
      if (e instanceof DstackError) return e;
      throw e;
    }
    throw new Error('expected an error');
  };
  assert.is(attempt(['--sede', '7']).message, 'unknown argument `--sede`; did you mean `--seed` (the variable `seed`)?');
  assert.is(attempt(['--row', '7']).message, 'unknown argument `--row`; did you mean `--rows` (the variable `rows`)?');
  assert.is(attempt(['--dryrun']).code, 'DS0024');
});

t('a run keeps artifacts outside /workflow in the spec, marked absolute (saved by the backends, no longer refused)', async () => {
  const project = await load(FILES);
  const prepared = prepareRun(store, { project, target: 'uses-env', tokens: [], hostEnv: {} }, '<run-name>');
  assert.equal(prepared.jobs[0]!.spec.artifacts, [{ path: '/opt/venv', mount: false, absolute: true }, { path: 'out', mount: false }]);
  assert.equal(prepared.jobs.map((j) => j.workflow), ['env', 'uses-env']);
});

test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

test.run();
