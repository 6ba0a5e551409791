/**
 * dstack 0.7 compatibility: every workflow of a 0.7-style file either plans and resolves, plans
 * with a warning, or is refused on its own with one deliberate, located error — never a crash, a
 * silent misreading, or a refusal of the whole project (issue 12).
 *
 * Two corpora: our own (test/fixtures/compat-0.7/, always there, so `npm test` passes from a clone
 * alone) and the examples from the dstack 0.7 docs in `shared/compat/dstack-0.7/`, found beside
 * the repository or any folder above it (a worktree, or CI's clone with a copy of shared/ beside
 * it), or at $DSTACK_COMPAT_CORPUS; required when CI=true. A file in either without an entry below
 * fails the test on purpose. The tally of outcomes is printed.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pin } from '../../src/engine/default-image.js';
import { DstackError, DstackErrors, formatError, type ErrorCode } from '../../src/engine/errors.js';
import { planRun } from '../../src/engine/plan.js';
import { resolveJob } from '../../src/engine/resolve.js';
import type { JobSpec, Project } from '../../src/engine/types.js';
import { loadProject } from '../../src/engine/workflow/load.js';
import { withTimeout } from '../helpers/timeout.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const OURS = join(REPO, 'test/fixtures/compat-0.7');

/** `shared/compat/dstack-0.7` beside the repository or beside any folder above it. */
function findShared(): string | undefined {
  if (process.env.DSTACK_COMPAT_CORPUS) return process.env.DSTACK_COMPAT_CORPUS;
  for (let dir = resolve(REPO); ; dir = dirname(dir)) {
    const candidate = join(dirname(dir), 'shared/compat/dstack-0.7');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}
const SHARED = findShared();

type Outcome = 'plans' | 'warns' | ErrorCode;
/** A file's expectation: one outcome for all its workflows, or one per workflow. */
type Expected = Outcome | Readonly<Record<string, Outcome>>;

const OUR_FILES: Readonly<Record<string, Expected>> = {
  'args.yaml': 'plans',
  'bash-deps.yaml': 'plans',
  'bash-env-cache.yaml': 'plans',
  'bash-ports.yaml': 'plans',
  'bash-python.yaml': 'plans',
  'conda-env.yaml': 'plans', // an absolute artifact: saved from the container, restored in dependents
  'dev-code.yaml': 'DS0027', // a dev environment
  'dev-lab.yaml': 'DS0027',
  'dev-notebook.yaml': 'DS0027',
  'docker-entrypoint.yaml': 'plans',
  'docker-private.yaml': 'plans',
  'model-cache.yaml': 'plans', // ~/.cache/huggingface, outside /workflow too
  'other-repo.yaml': 'plans', // a dep on another repository: resolved through the team bucket when run
  'placement.yaml': 'plans',
  'tag-deps.yaml': 'plans',
};

const SHARED_FILES: Readonly<Record<string, Expected>> = {
  'README-1.yaml': 'plans',
  'docs_index-1.yaml': 'plans',
  'docs_quick-start-1.yaml': 'plans',
  'docs_reference_providers_bash-1.yaml': 'plans',
  'docs_reference_providers_bash-2.yaml': 'plans',
  'docs_reference_providers_bash-3.yaml': 'plans',
  'docs_reference_providers_code-1.yaml': 'DS0027', // provider: code
  'docs_reference_providers_docker-1.yaml': 'plans',
  'docs_reference_providers_docker-2.yaml': 'plans',
  'docs_reference_providers_docker-3.yaml': 'plans',
  'docs_reference_providers_lab-1.yaml': 'DS0027', // provider: lab
  'docs_reference_providers_notebook-1.yaml': 'DS0027', // provider: notebook
  'docs_tutorials_stable-diffusion-1.yaml': 'plans',
  'docs_tutorials_stable-diffusion-2.yaml': 'DS0027', // provider: code
  'docs_tutorials_stable-diffusion-3.yaml': 'DS0006', // stable-diffusion is defined in another snippet (plans in the whole corpus)
  'docs_tutorials_tensorboard-1.yaml': 'plans',
  'docs_tutorials_wandb-1.yaml': 'plans',
  'docs_tutorials_wandb-2.yaml': 'plans',
  'docs_usage_apps-1.yaml': 'plans',
  'docs_usage_args-1.yaml': 'plans',
  'docs_usage_artifacts-1.yaml': 'plans',
  'docs_usage_artifacts-2.yaml': 'plans',
  'docs_usage_cache-1.yaml': 'plans',
  'docs_usage_deps-1.yaml': 'DS0006', // hello-txt is defined in another snippet (plans in the whole corpus)
  'docs_usage_deps-2.yaml': 'plans',
  'docs_usage_deps-3.yaml': 'plans', // a dep on another repository: resolved through the team bucket when run
  'docs_usage_environment-variables-1.yaml': 'plans',
  'docs_usage_hello-world-1.yaml': 'plans',
  'docs_usage_providers-1.yaml': 'plans',
  'docs_usage_providers-2.yaml': 'plans',
  'docs_usage_providers-3.yaml': 'DS0027', // provider: code
  'docs_usage_python-1.yaml': 'plans',
  'docs_usage_python-2.yaml': 'plans',
  'docs_usage_python-3.yaml': 'plans',
  'docs_usage_python-4.yaml': 'plans',
  'docs_usage_python-5.yaml': 'plans', // artifact /opt/conda/envs/myenv: saved from the container (test/e2e/envs.test.ts)
  'docs_usage_remote-1.yaml': 'plans',
  'docs_usage_remote-2.yaml': 'plans',
  'docs_usage_remote-3.yaml': 'plans',
  'docs_usage_remote-4.yaml': 'plans',
  'docs_usage_remote-5.yaml': 'plans', // resources.remote: true is the workflow's placement
  'docs_usage_secrets-1.yaml': 'plans',
};

const roots: string[] = [];
const jobsOf = new Map<string, JobSpec[]>();

function tempProject(files: Readonly<Record<string, string>>): string {
  const root = mkdtempSync(join(tmpdir(), 'dstack-compat-'));
  roots.push(root);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return root;
}

/**
 * Plans one workflow of a loaded project and resolves its jobs; its outcome. A refusal must be a
 * deliberate DstackError that points at the line that caused it.
 */
function outcomeOf(project: Project, name: string, jobs: JobSpec[]): { outcome: Outcome; error?: DstackError } {
  try {
    const plan = planRun(project, name);
    const last = plan.jobs.length - 1;
    plan.jobs.forEach((j, i) => jobs.push(resolveJob(j.workflow, { project, runName: 'wet-mangust-1', args: i === last ? ['--x', 'a b'] : [], overrides: {}, hostEnv: {} })));
    return { outcome: plan.notices.inPlan.some((d) => d.severity === 'warning') ? 'warns' : 'plans' };
  } catch (e) {
    if (!(e instanceof DstackError)) throw new Error(`${name}: not a DstackError: ${String((e as Error)?.stack ?? e)}`);
    const first = e instanceof DstackErrors ? e.errors[0]! : e;
    assert.ok(first.location && first.lineText !== undefined, `${name}: no location\n${formatError(e)}`);
    return { outcome: e.code, error: e };
  }
}

/** Every workflow named in the project, loaded or not, with its outcome. */
function outcomes(project: Project, jobs: JobSpec[]): Map<string, { outcome: Outcome; error?: DstackError }> {
  const names = new Set(project.workflows.keys());
  for (const d of project.diagnostics) {
    if (d.scope.kind === 'workflows') d.scope.names.forEach((n) => names.add(n));
    if (d.scope.kind === 'file') d.scope.workflows.forEach((n) => names.add(n));
  }
  return new Map([...names].map((n) => [n, outcomeOf(project, n, jobs)]));
}

const tally = new Map<string, Map<string, number>>();
function count(corpus: string, key: string, n = 1): void {
  const t = tally.get(corpus) ?? new Map<string, number>();
  t.set(key, (t.get(key) ?? 0) + n);
  tally.set(corpus, t);
}

function corpusTests(label: string, dir: string, expected: Readonly<Record<string, Expected>>): void {
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
  test(`${label}: every file has an expectation`, () => {
    assert.ok(files.length >= Object.keys(expected).length, `found ${files.length} files in ${dir}`);
    assert.equal(files.filter((f) => !(f in expected)), [], `add these to the expectations in test/unit/compat.test.ts`);
    assert.equal(Object.keys(expected).filter((f) => !files.includes(f)), [], 'expectations for files that are gone');
  });
  for (const file of files) {
    test(`${label}: ${file}`, withTimeout(5000, async () => {
      const project = await loadProject(tempProject({ '.dstack/workflows.yaml': readFileSync(join(dir, file), 'utf8') }));
      const jobs: JobSpec[] = [];
      const got = outcomes(project, jobs);
      assert.ok(got.size > 0, `${file}: no workflows`);
      jobsOf.set(`${label}/${file}`, jobs);
      const want = expected[file] ?? 'no expectation';
      for (const [name, { outcome, error }] of got) {
        const w = typeof want === 'string' ? want : want[name];
        assert.is(outcome, w, `${file}, workflow ${name}: ${outcome}${error ? `\n${formatError(error)}` : ''}`);
      }
      const kinds = new Set([...got.values()].map((o) => o.outcome));
      const refused = [...kinds].filter((k) => k !== 'plans' && k !== 'warns');
      count(label, refused.length ? `refused (${refused.join(', ')})` : kinds.has('warns') ? 'warns' : 'plans');
    }));
  }
}

corpusTests('ours', OURS, OUR_FILES);

test('ours: a project of several files, modelled on a real 0.7 one: each broken workflow stays broken alone', withTimeout(10_000, async () => {
  const root = tempProject({});
  cpSync(join(OURS, 'project'), root, { recursive: true });
  const project = await loadProject(root);
  const got = new Map([...outcomes(project, [])].map(([n, o]) => [n, o.outcome]));
  assert.equal(Object.fromEntries(got), {
    download: 'plans',
    clean: 'plans',
    'setup-venv': 'plans',
    'with-venv': 'plans',
    train: 'plans',
    'train-remote': 'plans',
    ide: 'DS0027',
    notebook: 'DS0027',
    'team-data': 'plans', // a dep on another repository: resolved through the team bucket when run
    'uses-team-data': 'plans',
    'broken-yaml': 'DS0001', // made out of the file that could not be parsed
  });
  assert.is(project.workflows.get('train')!.placement, 'local');
  assert.is(project.workflows.get('train-remote')!.placement, 'remote');
  assert.equal(project.workflows.get('setup-venv')!.artifacts, [{ path: '/opt/venv', mount: false, absolute: true }]);
}));

if (SHARED) {
  corpusTests('dstack 0.7 docs', SHARED, SHARED_FILES);

  test('dstack 0.7 docs, all files as one project: duplicates and dev environments are refused alone', withTimeout(10_000, async () => {
    const files = Object.fromEntries(readdirSync(SHARED).sort().map((f) => [`.dstack/workflows/${f}`, readFileSync(join(SHARED, f), 'utf8')]));
    const project = await loadProject(tempProject(files));
    const got = outcomes(project, []);
    const byOutcome = new Map<string, string[]>();
    for (const [name, { outcome }] of got) byOutcome.set(outcome, [...(byOutcome.get(outcome) ?? []), name]);
    // train-mnist, hello and hello-docker are each written in three snippets: a name defined twice.
    assert.equal(byOutcome.get('DS0005')?.sort(), ['hello', 'hello-docker', 'train-mnist']);
    assert.equal(byOutcome.get('DS0027')?.sort(), ['code-stable', 'ide', 'ide-code', 'ide-lab', 'ide-notebook']);
    assert.is(byOutcome.get('DS0022'), undefined, 'deps on other repositories plan (the team bucket resolves them when run)');
    assert.equal(byOutcome.get('warns'), undefined);
    assert.ok(byOutcome.get('plans')?.includes('setup-conda') && byOutcome.get('plans')?.includes('use-conda'), 'the Conda pair plans');
    for (const [outcome, names] of byOutcome) count('dstack 0.7 docs as one project (workflows)', outcome === 'plans' || outcome === 'warns' ? outcome : `refused (${outcome})`, names.length);
    assert.ok((byOutcome.get('plans')?.length ?? 0) >= 25, `plans: ${byOutcome.get('plans')?.join(', ')}`);
  }));

  const job = (file: string, i = 0): JobSpec => jobsOf.get(`dstack 0.7 docs/${file}`)![i]!;

  test('dstack 0.7 docs: details that must not be misread', () => {
    assert.is(job('docs_reference_providers_bash-1.yaml').image, pin('dstackai/miniforge:py3.10-0.2-cuda-11.1')); // asks for a GPU
    assert.equal(job('docs_reference_providers_bash-1.yaml').deps.map((d) => `${d.kind}:${d.name}`), ['tag:some_tag']);
    assert.is(job('docs_usage_python-3.yaml').image, pin('dstackai/miniforge:py3.7-0.2'));
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
    assert.equal(job('docs_usage_python-5.yaml').artifacts, [{ path: '/opt/conda/envs/myenv', mount: false, absolute: true }]);
  });
} else {
  test('dstack 0.7 docs corpus (shared/compat/dstack-0.7): required in CI', () => {
    if (process.env.CI === 'true')
      assert.unreachable(`CI=true, but shared/compat/dstack-0.7 is not beside ${REPO} or any folder above it; set DSTACK_COMPAT_CORPUS to its path`);
    console.log('compat: shared/compat/dstack-0.7 not found beside the repository; only our own corpus was checked');
  });
}

const ourJob = (file: string, i = 0): JobSpec => jobsOf.get(`ours/${file}`)![i]!;

test('ours: details that must not be misread', () => {
  assert.is(ourJob('bash-python.yaml').image, pin('dstackai/miniforge:py3.10-0.2'));
  assert.is(ourJob('args.yaml').image, pin('dstackai/miniforge:py3.9-0.2'));
  // Jobs in the order planned: `features` alone, then `train`'s plan (features, train).
  const train = ourJob('bash-deps.yaml', 2);
  assert.equal(train.deps.map((d) => `${d.kind}:${d.name}`), ['workflow:features', 'tag:vocab-v2']);
  assert.equal(train.resources, { gpu: { count: 2, name: 'A100' }, memory: 32e9, shmSize: 8e9, interruptible: true });
  assert.equal(train.artifacts, [{ path: 'checkpoints', mount: true }]);
  assert.match(train.command!.at(-1)!, /^pip install torch\npython train\.py --epochs 3 --x 'a b'\necho trained$/);
  assert.equal(ourJob('bash-deps.yaml', 1).args, [], 'run.args are the named workflow\'s only');
  assert.equal(ourJob('bash-env-cache.yaml').env, { WANDB_PROJECT: 'mnist', BATCH: '64' });
  assert.equal(ourJob('bash-env-cache.yaml').cache, ['~/.cache/pip', 'downloads']);
  assert.is(ourJob('bash-ports.yaml').ports, 2);
  assert.equal(ourJob('docker-entrypoint.yaml').entrypoint, ['/bin/bash', '-c']);
  assert.is(ourJob('docker-private.yaml').registryAuth?.username, '\u0000secret:REGISTRY_USER\u0000');
  assert.equal(ourJob('model-cache.yaml').artifacts, [{ path: '~/.cache/huggingface', mount: false, absolute: true }]);
});

test.after(() => {
  for (const [corpus, counts] of tally) {
    const parts = [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} ${k}`);
    console.log(`compat tally, ${corpus}: ${parts.join('; ')}`);
  }
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

test.run();
