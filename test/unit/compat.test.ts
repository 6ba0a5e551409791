/**
 * Every `workflows:` example from the dstack 0.7 docs (../shared/compat/dstack-0.7/) must either
 * plan and resolve, or fail with one deliberate DstackError; never a crash, never a silent misreading.
 * A new file in that folder without an entry below fails the test on purpose.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError, formatError, type ErrorCode } from '../../src/engine/errors.js';
import { planRun } from '../../src/engine/plan.js';
import { resolveJob } from '../../src/engine/resolve.js';
import type { JobSpec, Project } from '../../src/engine/types.js';
import { loadProject } from '../../src/engine/workflow/load.js';
import { withTimeout } from '../helpers/timeout.js';

const CORPUS = fileURLToPath(new URL('../../../shared/compat/dstack-0.7/', import.meta.url));

const EXPECTED: Readonly<Record<string, 'plans' | ErrorCode>> = {
  'README-1.yaml': 'plans',
  'docs_index-1.yaml': 'plans',
  'docs_quick-start-1.yaml': 'plans',
  'docs_reference_providers_bash-1.yaml': 'plans',
  'docs_reference_providers_bash-2.yaml': 'plans',
  'docs_reference_providers_bash-3.yaml': 'plans',
  'docs_reference_providers_code-1.yaml': 'DS0010', // provider: code
  'docs_reference_providers_docker-1.yaml': 'plans',
  'docs_reference_providers_docker-2.yaml': 'plans',
  'docs_reference_providers_docker-3.yaml': 'plans',
  'docs_reference_providers_lab-1.yaml': 'DS0010', // provider: lab
  'docs_reference_providers_notebook-1.yaml': 'DS0010', // provider: notebook
  'docs_tutorials_stable-diffusion-1.yaml': 'plans',
  'docs_tutorials_stable-diffusion-2.yaml': 'DS0010', // provider: code
  'docs_tutorials_stable-diffusion-3.yaml': 'DS0006', // stable-diffusion is defined in another snippet
  'docs_tutorials_tensorboard-1.yaml': 'plans',
  'docs_tutorials_wandb-1.yaml': 'plans',
  'docs_tutorials_wandb-2.yaml': 'plans',
  'docs_usage_apps-1.yaml': 'plans',
  'docs_usage_args-1.yaml': 'plans',
  'docs_usage_artifacts-1.yaml': 'plans',
  'docs_usage_artifacts-2.yaml': 'plans',
  'docs_usage_cache-1.yaml': 'plans',
  'docs_usage_deps-1.yaml': 'DS0006', // hello-txt is defined in another snippet
  'docs_usage_deps-2.yaml': 'plans',
  'docs_usage_deps-3.yaml': 'plans', // a dep on another repository: resolved through the team bucket when run
  'docs_usage_environment-variables-1.yaml': 'plans',
  'docs_usage_hello-world-1.yaml': 'plans',
  'docs_usage_providers-1.yaml': 'plans',
  'docs_usage_providers-2.yaml': 'plans',
  'docs_usage_providers-3.yaml': 'DS0010', // provider: code
  'docs_usage_python-1.yaml': 'plans',
  'docs_usage_python-2.yaml': 'plans',
  'docs_usage_python-3.yaml': 'plans',
  'docs_usage_python-4.yaml': 'plans',
  'docs_usage_python-5.yaml': 'DS0009', // artifact /opt/conda/envs/myenv is outside the project
  'docs_usage_remote-1.yaml': 'plans',
  'docs_usage_remote-2.yaml': 'plans',
  'docs_usage_remote-3.yaml': 'plans',
  'docs_usage_remote-4.yaml': 'plans',
  'docs_usage_remote-5.yaml': 'DS0013', // resources.remote
  'docs_usage_secrets-1.yaml': 'plans',
};

const roots: string[] = [];
const jobsOf = new Map<string, JobSpec[]>();

/** Loads the snippet as a project, plans every workflow in it and resolves every planned job. */
async function outcome(file: string): Promise<'plans' | DstackError> {
  const root = mkdtempSync(join(tmpdir(), 'dstack-compat-'));
  roots.push(root);
  mkdirSync(join(root, '.dstack'));
  writeFileSync(join(root, '.dstack/workflows.yaml'), readFileSync(join(CORPUS, file)));
  try {
    const project: Project = await loadProject(root);
    const jobs: JobSpec[] = [];
    for (const name of project.workflows.keys()) {
      for (const job of planRun(project, name).jobs) {
        jobs.push(resolveJob(job.workflow, { project, runName: 'wet-mangust-1', args: ['--x', 'a b'], overrides: {}, hostEnv: {} }));
      }
    }
    assert.ok(jobs.length > 0, `${file}: no workflows`);
    jobsOf.set(file, jobs);
    return 'plans';
  } catch (e) {
    if (e instanceof DstackError) return e;
    throw new Error(`${file}: not a DstackError: ${String((e as Error)?.stack ?? e)}`);
  }
}

const files = readdirSync(CORPUS).sort();

test('the corpus is there and every file has an expectation', () => {
  assert.ok(files.length >= 40, `found ${files.length} files in ${CORPUS}`);
  const missing = files.filter((f) => !(f in EXPECTED));
  assert.equal(missing, [], `add these to EXPECTED in test/unit/compat.test.ts: ${missing.join(', ')}`);
  const stale = Object.keys(EXPECTED).filter((f) => !files.includes(f));
  assert.equal(stale, [], 'expectations for files that are gone');
});

for (const file of files) {
  test(file, withTimeout(5000, async () => {
    const got = await outcome(file);
    const want = EXPECTED[file] ?? 'no expectation';
    if (got === 'plans') assert.is(got, want, `${file} planned, expected ${want}`);
    else {
      assert.is(got.code, want, `${file}:\n${formatError(got)}`);
      // A deliberate error points at the line that caused it.
      assert.ok(got.location && got.lineText !== undefined, `${file}: no location\n${formatError(got)}`);
    }
  }));
}

const job = (file: string, i = 0): JobSpec => jobsOf.get(file)![i]!;

test('details that must not be misread', () => {
  assert.is(job('docs_reference_providers_bash-1.yaml').image, 'python:3.10-slim');
  assert.equal(job('docs_reference_providers_bash-1.yaml').deps.map((d) => `${d.kind}:${d.name}`), ['tag:some_tag']);
  assert.is(job('docs_usage_python-3.yaml').image, 'python:3.7-slim');
  assert.match(job('docs_reference_providers_bash-2.yaml').command!.at(-1)!, /--bind 0\.0\.0\.0:\$PORT_0$/);
  assert.is(job('docs_reference_providers_bash-2.yaml').ports, 1);
  assert.equal(job('docs_reference_providers_docker-1.yaml').entrypoint, ['/bin/bash', '-i', '-c']);
  assert.equal(job('docs_reference_providers_docker-1.yaml').resources.gpu, { count: 1, name: 'K80' });
  assert.is(job('docs_reference_providers_docker-3.yaml').registryAuth?.password, '\u0000secret:GHCR_TOKEN\u0000');
  assert.equal(job('docs_quick-start-1.yaml').cache, ['data', '~/.cache/pip']);
  assert.equal(job('docs_usage_deps-3.yaml').deps.map((d) => `${d.kind}:${d.name}`), ['workflow:dstackai/dstack-playground/txt-file']);
  assert.equal(job('docs_usage_artifacts-2.yaml').artifacts, [{ path: 'output', mount: true }]);
  assert.match(job('docs_usage_args-1.yaml').command!.at(-1)!, /hello_args\.py --x 'a b'$/);
  assert.equal(job('docs_usage_environment-variables-1.yaml').env, { DSTACK_ENV_1: 'VAL1', DSTACK_ENV_2: 'VAL2' });
  assert.is(job('docs_usage_remote-2.yaml').resources.memory, 64e9);
  assert.is(job('docs_usage_remote-3.yaml').resources.shmSize, 16e9);
  assert.equal(job('docs_usage_remote-4.yaml').resources, { gpu: { count: 1 }, interruptible: true });
});

test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

test.run();
