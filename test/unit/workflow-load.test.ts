import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError, DstackErrors, formatError } from '../../src/engine/errors.js';
import { toError } from '../../src/engine/diagnostics.js';
import { findProjectRoot, loadProject } from '../../src/engine/workflow/load.js';
import { withTimeout } from '../helpers/timeout.js';

const roots: string[] = [];
function project(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'dstack-wf-'));
  roots.push(root);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return root;
}
const wf = (yaml: string): string => project({ '.dstack/workflows.yaml': yaml });

/** The load's error diagnostics as one DstackError (the loader reports, it does not throw), or what it threw. */
async function loadError(root: string): Promise<DstackError> {
  let project;
  try {
    project = await loadProject(root);
  } catch (e) {
    if (e instanceof DstackError) return e;
    throw e;
  }
  const errors = project.diagnostics.filter((d) => d.severity === 'error').map(toError);
  if (errors.length === 0) throw new Error('expected the load to find errors');
  return errors.length === 1 ? errors[0]! : new DstackErrors(errors);
}
const t = (name: string, fn: () => Promise<void>): void => test(name, withTimeout(5000, fn));

t('malformed YAML is DS0001 at the parser position', async () => {
  const e = await loadError(wf('workflows:\n  - name: a\n    commands: [echo\n'));
  assert.is(e.code, 'DS0001');
  assert.is(
    formatError(e),
    [
      'error DS0001: malformed YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
      '  --> .dstack/workflows.yaml:3:19',
      '  |',
      '3 |     commands: [echo',
      '  |                   ^',
    ].join('\n'),
  );
});

t('malformed YAML: bad indentation', async () => {
  const e = await loadError(wf('workflows:\n  - name: a\n   commands: x\n'));
  assert.is(e.code, 'DS0001');
  assert.is(e.message, 'malformed YAML: Sequence item without - indicator');
  assert.equal(e.location, { file: '.dstack/workflows.yaml', line: 3, col: 1 });
  assert.is(e.lineText, '   commands: x');
});

t('unknown field gets "did you mean": exact text', async () => {
  const e = await loadError(wf('workflows:\n  - name: train\n    artifact:\n      - path: ./model\n'));
  assert.is(
    formatError(e),
    [
      'error DS0002: unknown field `artifact` in workflow `train`; did you mean `artifacts`?',
      '  --> .dstack/workflows.yaml:3:5',
      '  |',
      '3 |     artifact:',
      '  |     ^',
    ].join('\n'),
  );
});

t('unknown field without a near match lists the known ones', async () => {
  const e = await loadError(wf('workflows:\n  - name: train\n    resources:\n      disk: 10GB\n'));
  assert.is(e.code, 'DS0002');
  assert.is(e.message, 'unknown field `disk` in `resources` in workflow `train`');
  assert.is(e.hint, 'known fields: cpu, memory, gpu, shm_size, interruptible, local, remote');
  assert.equal(e.location, { file: '.dstack/workflows.yaml', line: 4, col: 7 });
});

t('wrong type says what was expected: exact text', async () => {
  const e = await loadError(wf('workflows:\n  - name: train\n    resources:\n      cpu: four\n'));
  assert.is(
    formatError(e),
    [
      'error DS0003: wrong type for `resources.cpu` in workflow `train`: expected a number of CPUs, got "four"',
      '  --> .dstack/workflows.yaml:4:12',
      '  |',
      '4 |       cpu: four',
      '  |            ^',
    ].join('\n'),
  );
});

t('memory 8XB is DS0011 with examples: exact text', async () => {
  const e = await loadError(wf('workflows:\n  - name: train\n    commands: [echo]\n    resources:\n      memory: 8XB\n'));
  assert.is(
    formatError(e),
    [
      'error DS0011: invalid size `8XB` for `resources.memory` in workflow `train`',
      '  --> .dstack/workflows.yaml:5:15',
      '  |',
      '5 |       memory: 8XB',
      '  |               ^',
      '  = expected a number and a unit, e.g. 512MB, 16GB, 8GiB (MB/GB decimal, MiB/GiB binary)',
    ].join('\n'),
  );
});

t('missing name is DS0004; several errors come together in reading order', async () => {
  const e = await loadError(wf('workflows:\n  - commands: [echo]\n  - name: b\n    ports: yes\n  - name: c\n    provider: bsh\n'));
  assert.instance(e, DstackErrors);
  const all = (e as DstackErrors).errors;
  assert.equal(all.map((x) => x.code), ['DS0004', 'DS0003', 'DS0003']);
  assert.is(all[0]!.message, 'a workflow needs a `name`');
  assert.is(all[1]!.message, 'wrong type for `ports` in workflow `b`: expected a number of ports, got "yes"');
  assert.is(all[2]!.message, 'unknown provider `bsh` in workflow `c`; did you mean `bash`?');
  assert.is(all[2]!.hint, 'expected `bash` or `docker`');
});

t('artifact paths that leave the working dir are DS0009 at their line; absolute ones load, never mounted', async () => {
  const root = wf('workflows:\n  - name: a\n    artifacts:\n      - ../x\n      - path: /etc\n      - path: ./ok\n      - ~/.cache/x\n      - /workflow/out/\n      - /\n');
  const e = await loadError(root);
  const all = (e as DstackErrors).errors;
  assert.equal(all.map((x) => [x.code, x.location?.line, x.location?.col]), [['DS0009', 4, 9], ['DS0009', 9, 9]]);
  assert.is(all[0]!.message, 'artifact path `../x` in workflow `a` leaves the working directory');
  assert.is(all[1]!.message, 'artifact path `/` in workflow `a` is not a folder whose content can be kept');
  const ok = await loadProject(wf('workflows:\n  - name: a\n    artifacts:\n      - path: /opt/conda/envs/myenv/\n        mount: true\n      - ~/.cache/x\n      - /workflow/out/\n'));
  assert.equal(ok.workflows.get('a')!.artifacts, [
    { path: '/opt/conda/envs/myenv', mount: false, absolute: true },
    { path: '~/.cache/x', mount: false, absolute: true },
    { path: 'out', mount: false },
  ]);
  // mount: true outside /workflow cannot be live: a warning on that field, the workflow still loads.
  assert.equal(ok.diagnostics.map((d) => [d.severity, d.code, d.location?.line, d.location?.col, d.message, d.hint]), [[
    'warning', 'DS0013', 5, 16,
    '`mount: true` on artifact `/opt/conda/envs/myenv/` in workflow `a` is ignored: an artifact outside /workflow is saved when the job ends, not live while it runs',
    'drop `mount: true`, or keep the artifact under /workflow (such as ./output) to see it live on the machine while the job runs',
  ]]);
});

t('python 3.10 keeps its source text; other fields map to the spec', async () => {
  const root = wf(
    [
      'workflows:',
      '  - name: train',
      '    help: Trains',
      '    python: 3.10',
      '    setup: |',
      '      pip install -r requirements.txt',
      '      echo ready',
      '    commands:',
      '      - python train.py',
      '      - true',
      '    deps: [prep, ":latest", {workflow: prep}, {tag: base}]',
      '    artifacts: [./model/, {path: logs, mount: true}]',
      '    cache: [~/.cache/pip, {path: ./data}]',
      '    env: [A=1, B]',
      '    ports: 2',
      '    working_dir: ./src',
      '    inputs: [src, ./requirements.txt]',
      '    resources: {cpu: 4, memory: 16GB, shm_size: 1GiB, interruptible: true, gpu: {name: V100, memory: 16GB}}',
      '  - name: prep',
      '    provider: docker',
      '    image: ubuntu',
      '    entrypoint: /bin/bash -c "echo \'hi there\'"',
      '    env: {X: 1, Y: }',
      '    registry_auth: {username: me, password: "${{ secrets.TOKEN }}"}',
    ].join('\n'),
  );
  const p = await loadProject(root);
  const train = p.workflows.get('train')!;
  assert.is(train.python, '3.10');
  assert.is(train.help, 'Trains');
  assert.is(train.provider, 'bash');
  assert.equal(train.setup, ['pip install -r requirements.txt', 'echo ready']);
  assert.equal(train.commands, ['python train.py', 'true']);
  assert.equal(train.deps.map((d) => `${d.kind}:${d.name}`), ['workflow:prep', 'tag:latest', 'workflow:prep', 'tag:base']);
  assert.equal(train.artifacts, [{ path: 'model', mount: false }, { path: 'logs', mount: true }]);
  assert.equal(train.cache, ['~/.cache/pip', 'data']);
  assert.equal(train.env, [{ name: 'A', value: '1' }, { name: 'B' }]);
  assert.is(train.ports, 2);
  assert.is(train.workingDir, 'src');
  assert.equal(train.inputs, ['src', 'requirements.txt']);
  assert.equal(train.resources, { cpu: 4, memory: 16e9, shmSize: 2 ** 30, interruptible: true, gpu: { count: 1, name: 'V100', memory: 16e9 } });
  assert.equal(train.fieldLocations.get('setup.1'), { file: '.dstack/workflows.yaml', line: 7, col: 7 });
  assert.equal(train.fieldLocations.get('commands.1'), { file: '.dstack/workflows.yaml', line: 10, col: 9 });
  const prep = p.workflows.get('prep')!;
  assert.equal(prep.entrypoint, ['/bin/bash', '-c', "echo 'hi there'"]);
  assert.equal(prep.env, [{ name: 'X', value: '1' }, { name: 'Y' }]);
  assert.equal(prep.registryAuth, { username: 'me', password: '${{ secrets.TOKEN }}' });
});

t('a name defined twice across files names both places', async () => {
  const root = project({
    '.dstack/workflows.yaml': 'workflows:\n  - name: train\n    commands: [echo]\n',
    '.dstack/workflows/b.yml': 'workflows:\n  - name: other\n  - name: train\n    commands: [echo]\n',
    '.dstack/workflows/a.yaml': 'workflows:\n  - name: first\n',
  });
  const e = await loadError(root);
  assert.is(
    formatError(e),
    [
      'error DS0005: workflow `train` is defined twice: at .dstack/workflows.yaml:2:5 and at .dstack/workflows/b.yml:3:5',
      '  --> .dstack/workflows/b.yml:3:5',
      '  |',
      '3 |   - name: train',
      '  |     ^',
      '  = rename or remove one of them',
    ].join('\n'),
  );
});

t('files under .dstack/workflows/ are merged, sorted', async () => {
  const root = project({
    '.dstack/workflows/b.yml': 'workflows:\n  - name: b\n',
    '.dstack/workflows/a.yaml': 'workflows:\n  - name: a\n',
    '.dstack/workflows/notes.txt': 'not yaml: [',
  });
  assert.equal([...(await loadProject(root)).workflows.keys()], ['a', 'b']);
});

t('no workflows file is DS0012 with a hint to run dstack init', async () => {
  const e = await loadError(project({ '.dstack/variables.yaml': 'variables: {}\n' }));
  assert.is(e.code, 'DS0012');
  assert.is(e.hint, 'run `dstack init` to write a starter .dstack/workflows.yaml');
});

t('dstack 0.7 features that do not run here get precise errors, each on its own workflow', async () => {
  const p = await loadProject(
    wf('workflows:\n  - name: a\n    provider: code\n  - name: b\n    deps:\n      - workflow: org/wf\n    ports: [8080]\n  - name: c\n    provider: tensorboard\n  - name: d\n    commands: [echo]\n'),
  );
  assert.equal(p.diagnostics.map((x) => [x.code, x.scope]), [
    ['DS0027', { kind: 'workflows', names: ['a'] }],
    ['DS0003', { kind: 'workflows', names: ['b'] }],
    ['DS0013', { kind: 'workflows', names: ['b'] }],
    ['DS0010', { kind: 'workflows', names: ['c'] }],
  ]);
  assert.is(p.diagnostics[0]!.message, 'provider `code` in workflow `a` is a dev environment, which this dstack cannot run yet; the workflow is not runnable');
  assert.is(p.diagnostics[1]!.message, 'a dep on another repository in workflow `b` is written `owner/repo/workflow`, not `org/wf`');
  assert.is(p.diagnostics[3]!.message, "provider 'tensorboard' in workflow `c` is not offered by this dstack yet; use provider: bash with ports");
  assert.equal([...p.workflows.keys()], ['d']);
});

t('resources.local and resources.remote become the placement; both at once is DS0026', async () => {
  const p = await loadProject(wf('workflows:\n  - name: l\n    resources: {local: true}\n  - name: r\n    resources: {remote: true}\n  - name: n\n    resources: {local: false}\n  - name: x\n    resources: {local: true, remote: true}\n'));
  assert.is(p.workflows.get('l')!.placement, 'local');
  assert.is(p.workflows.get('r')!.placement, 'remote');
  assert.is(p.workflows.get('n')!.placement, undefined);
  assert.equal(p.workflows.get('l')!.resources, {});
  assert.equal(p.diagnostics.map((d) => [d.code, d.message, d.location?.line, d.location?.col]), [
    ['DS0026', '`resources.local` and `resources.remote` are both true in workflow `x`', 9, 38],
  ]);
});

t('docker provider without image is DS0004', async () => {
  const e = await loadError(wf('workflows:\n  - name: d\n    provider: docker\n'));
  assert.is(e.code, 'DS0004');
  assert.is(e.message, 'workflow `d` uses provider `docker` but has no `image`');
});

t('variables.yaml keeps values as written', async () => {
  const root = project({
    '.dstack/workflows.yaml': 'workflows:\n  - name: train\n',
    '.dstack/variables.yaml': 'variables:\n  global:\n    lr: 0.10\n    name: x\n  train:\n    epochs: 10\n',
  });
  const p = await loadProject(root);
  assert.equal(p.variables.global, { lr: '0.10', name: 'x' });
  assert.equal(p.variables.perWorkflow, { train: { epochs: '10' } });
  assert.equal(p.variables.locations.get('train.epochs'), { file: '.dstack/variables.yaml', line: 6, col: 5 });
});

t('a wrong variables.yaml is reported with its file', async () => {
  const e = await loadError(project({ '.dstack/workflows.yaml': 'workflows: []\n', '.dstack/variables.yaml': 'variable:\n  global: {}\n' }));
  assert.is(e.code, 'DS0002');
  assert.is(e.message, 'unknown field `variable` in .dstack/variables.yaml; did you mean `variables`?');
});

t('findProjectRoot finds the nearest .dstack/ with project files', async () => {
  const root = project({ '.dstack/workflows.yaml': 'workflows: []\n', 'a/b/c/.keep': '' });
  assert.is(findProjectRoot(join(root, 'a/b/c')), root);
  const bare = project({ '.dstack/.keep': '', 'x/.keep': '' });
  assert.is(findProjectRoot(join(bare, 'x')), bare);
});

test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

test.run();
