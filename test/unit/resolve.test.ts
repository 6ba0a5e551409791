import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pin } from '../../src/engine/default-image.js';
import { DstackError, formatError } from '../../src/engine/errors.js';
import { BASH_BOOTSTRAP, DEFAULT_PYTHON, resolveJob, type ResolveContext } from '../../src/engine/resolve.js';
import { secretMarker, type JobSpec, type Project } from '../../src/engine/types.js';
import { declaredVariables, parseRunArgs } from '../../src/engine/workflow/args.js';
import { loadProject } from '../../src/engine/workflow/load.js';
import { withTimeout } from '../helpers/timeout.js';

const roots: string[] = [];
async function load(files: Record<string, string>): Promise<Project> {
  const root = mkdtempSync(join(tmpdir(), 'dstack-resolve-'));
  roots.push(root);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return loadProject(root);
}
const ctx = (project: Project, extra: Partial<ResolveContext> = {}): ResolveContext => ({
  project, runName: 'wet-mangust-1', args: [], overrides: {}, hostEnv: {}, ...extra,
});
const resolve = (p: Project, name: string, extra: Partial<ResolveContext> = {}): JobSpec => resolveJob(p.workflows.get(name)!, ctx(p, extra));
function resolveError(p: Project, name: string, extra: Partial<ResolveContext> = {}): DstackError {
  try {
    resolve(p, name, extra);
  } catch (e) {
    if (e instanceof DstackError) return e;
    throw e;
  }
  throw new Error('expected an error');
}
const t = (name: string, fn: () => Promise<void>): void => test(name, withTimeout(5000, fn));

const TRAIN = {
  '.dstack/variables.yaml': 'variables:\n  global:\n    epochs: 5\n    lr: 0.10\n  train:\n    batch: 32\n  other:\n    secret_only_there: x\n',
  '.dstack/workflows.yaml': `workflows:
  - name: train
    python: 3.10
    setup:
      - pip install -r requirements.txt
    commands:
      - python train.py --epochs \${{ variables.epochs }} --lr \${{lr}} --batch \${{ batch }} \${{ run.args }}
      - echo $$HOME costs 5$$ on $PORT_0 in \${{ run.name }}
    env:
      - HF_TOKEN=\${{ secrets.HF_TOKEN }}
      - FROM_HOST
      - NOT_SET
      - OUT=/workflow/\${{ run.name }}
    artifacts: [model]
`,
};

t('variables, CLI override, run.args, $$ and secrets', async () => {
  const p = await load(TRAIN);
  const { overrides, args } = parseRunArgs(['--epochs', '10', 'data dir', '--secret_only_there=y', "it's"], declaredVariables(p, ['train']));
  const job = resolve(p, 'train', { overrides, args, hostEnv: { FROM_HOST: 'h', HOME: '/root' } });
  assert.equal(job.variables, { epochs: '10', lr: '0.10', batch: '32' });
  assert.equal(job.args, ['data dir', '--secret_only_there=y', "it's"]);
  const script = [
    'pip install -r requirements.txt',
    `python train.py --epochs 10 --lr 0.10 --batch 32 'data dir' --secret_only_there=y 'it'\\''s'`,
    'echo $HOME costs 5$ on $PORT_0 in wet-mangust-1',
  ].join('\n');
  assert.equal(job.command, ['/bin/sh', '-c', BASH_BOOTSTRAP, 'dstack', script]);
  assert.is(job.image, pin('dstackai/miniforge:py3.10-0.2'));
  assert.is(job.defaultImage, true);
  assert.equal(job.env, { HF_TOKEN: secretMarker('HF_TOKEN'), FROM_HOST: 'h', OUT: '/workflow/wet-mangust-1' });
  assert.is(job.workingDir, '');
  assert.equal(job.artifacts, [{ path: 'model', mount: false }]);
});

t('the default image of provider bash: Miniforge for `python:`, its CUDA variant with a GPU, DS0044 for a version without one', async () => {
  const p = await load({
    '.dstack/workflows.yaml': [
      'workflows:',
      '  - name: cpu',
      '    commands: [echo]',
      '  - name: gpu',
      '    python: 3.9',
      '    resources: { gpu: 1 }',
      '    commands: [echo]',
      '  - name: own',
      '    image: busybox',
      '    commands: [echo]',
      '  - name: old',
      '    python: 2.7',
      '    commands: [echo]',
      '',
    ].join('\n'),
  });
  assert.is(resolve(p, 'cpu').image, pin(`dstackai/miniforge:py${DEFAULT_PYTHON}-0.2`));
  assert.is(resolve(p, 'gpu').image, pin('dstackai/miniforge:py3.9-0.2-cuda-11.1'));
  assert.is(resolve(p, 'own').defaultImage, undefined);
  const e = resolveError(p, 'old');
  assert.is(e.code, 'DS0044');
  assert.is(e.message, '`python: 2.7` of workflow `old` has no default image');
  assert.is(e.hint, 'give a version among 3.7, 3.8, 3.9, 3.10, 3.11, or an image of your own with `image:` (e.g. python:2.7-slim)');
});

t('an override of a variable the workflow does not declare is ignored', async () => {
  const p = await load(TRAIN);
  assert.equal(resolve(p, 'train', { overrides: { secret_only_there: 'y' } }).variables, { epochs: '5', lr: '0.10', batch: '32' });
});

t('unknown variable: exact file:line:col of the ${{', async () => {
  const p = await load({
    '.dstack/variables.yaml': 'variables:\n  global:\n    epochs: 5\n',
    '.dstack/workflows.yaml': 'workflows:\n  - name: train\n    commands:\n      - echo ok\n      - python train.py --epochs ${{ variables.epoch }}\n',
  });
  assert.is(
    formatError(resolveError(p, 'train')),
    [
      'error DS0008: unknown variable `epoch` in `commands[1]` of workflow `train`; did you mean `epochs`?',
      '  --> .dstack/workflows.yaml:5:34',
      '  |',
      '5 |       - python train.py --epochs ${{ variables.epoch }}',
      '  |                                  ^',
      '  = declare it in .dstack/variables.yaml under `global:` or `train:`',
    ].join('\n'),
  );
});

t('unknown variable inside a block scalar points at its own line', async () => {
  const p = await load({
    '.dstack/workflows.yaml': 'workflows:\n  - name: train\n    commands: |\n      echo one\n      echo ${{ two }}\n',
  });
  const e = resolveError(p, 'train');
  assert.equal(e.location, { file: '.dstack/workflows.yaml', line: 5, col: 12 });
  assert.is(e.lineText, '      echo ${{ two }}');
});

t('docker provider: entrypoint with commands, commands alone, neither', async () => {
  const p = await load({
    '.dstack/workflows.yaml': `workflows:
  - name: ep
    provider: docker
    image: ubuntu:\${{ tag }}
    entrypoint: /bin/bash -c
    setup: [apt-get update]
    commands: [mkdir -p out, echo hi > out/x]
  - name: cmd
    provider: docker
    image: ubuntu
    commands: [echo hi]
  - name: plain
    provider: docker
    image: nginx
    registry_auth:
      username: me
      password: \${{ secrets.PW }}
`,
    '.dstack/variables.yaml': 'variables:\n  ep:\n    tag: 22.04\n',
  });
  const ep = resolve(p, 'ep');
  assert.is(ep.image, 'ubuntu:22.04');
  assert.equal(ep.entrypoint, ['/bin/bash', '-c']);
  assert.equal(ep.command, ['apt-get update && mkdir -p out && echo hi > out/x']);
  const cmd = resolve(p, 'cmd');
  assert.is(cmd.entrypoint, undefined);
  assert.equal(cmd.command, ['/bin/sh', '-c', 'echo hi']);
  const plain = resolve(p, 'plain');
  assert.is(plain.command, undefined);
  assert.is(plain.entrypoint, undefined);
  assert.equal(plain.registryAuth, { username: 'me', password: secretMarker('PW') });
});

t('command-line job overrides', async () => {
  const p = await load({
    '.dstack/workflows.yaml': `workflows:
  - name: train
    env: {A: "1"}
    artifacts: [model]
    resources: {cpu: 2, memory: 8GB, gpu: {count: 1, name: T4}}
  - name: prep
`,
  });
  const job = resolve(p, 'train', {
    hostEnv: { H: 'host' },
    jobOverrides: {
      cpu: 8, memory: '16GiB', gpu: 2, gpuMemory: '24GB', shmSize: '1GB', interruptible: true,
      env: ['A=2', 'B=x=y', 'H', 'MISSING'], artifacts: ['./logs/', 'model'], workingDir: 'src', deps: ['prep', ':t'],
    },
  });
  assert.equal(job.resources, { cpu: 8, memory: 16 * 2 ** 30, gpu: { count: 2, name: 'T4', memory: 24e9 }, shmSize: 1e9, interruptible: true });
  assert.equal(job.env, { A: '2', B: 'x=y', H: 'host' });
  assert.equal(job.artifacts, [{ path: 'model', mount: false }, { path: 'logs', mount: false }]);
  assert.is(job.workingDir, 'src');
  assert.equal(job.deps.map((d) => `${d.kind}:${d.name}`), ['workflow:prep', 'tag:t']);
  const bad = (o: object): string => resolveError(p, 'train', { jobOverrides: o }).code;
  assert.is(bad({ memory: '8XB' }), 'DS0011');
  assert.is(bad({ artifacts: ['../x'] }), 'DS0009');
  assert.is(bad({ workingDir: '/etc' }), 'DS0009');
  assert.is(bad({ env: ['1X=2'] }), 'DS0100');
  // Bounds a machine could satisfy, as for the same fields in a file.
  assert.is(resolveError(p, 'train', { jobOverrides: { memory: '0.0000001MB' } }).message, '--memory 0 bytes is out of bounds: the least is 6MiB');
  assert.is(resolveError(p, 'train', { jobOverrides: { cpu: 1e100 } }).message, '--cpu 1e+100 is out of bounds: the most is 1024');
  assert.is(bad({ gpu: 1e23 }), 'DS0019');
  assert.is(bad({ gpu: 1.5 }), 'DS0019');
  assert.is(bad({ shmSize: '1KB' }), 'DS0019');
  // An artifact outside /workflow from the command line is kept as such (runs refuse it, see submit.ts).
  assert.equal(resolve(p, 'train', { jobOverrides: { artifacts: ['/opt/venv'] } }).artifacts.at(-1), { path: '/opt/venv', mount: false, absolute: true });
});

t('an interpolated path that leaves the working dir is DS0009', async () => {
  const p = await load({
    '.dstack/workflows.yaml': 'workflows:\n  - name: w\n    working_dir: ${{ dir }}\n',
    '.dstack/variables.yaml': 'variables:\n  global:\n    dir: ../up\n',
  });
  const e = resolveError(p, 'w');
  assert.is(e.code, 'DS0009');
  assert.equal(e.location, { file: '.dstack/workflows.yaml', line: 3, col: 18 });
});

test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

test.run();
