/**
 * Input no machine could satisfy, files that are not files, YAML that expands or points nowhere,
 * and problems confined to the workflow or file they are in (issues 8 and 12).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { briefly } from '../../src/engine/diagnostics.js';
import type { Diagnostic, Project } from '../../src/engine/types.js';
import { loadProject } from '../../src/engine/workflow/load.js';
import { MAX_FILE_BYTES, readProjectFile } from '../../src/engine/workflow/read.js';
import { withTimeout } from '../helpers/timeout.js';

const roots: string[] = [];
function project(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'dstack-bad-'));
  roots.push(root);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return root;
}
const load = (yaml: string): Promise<Project> => loadProject(project({ '.dstack/workflows.yaml': yaml }));
const one = (p: Project): Diagnostic => {
  assert.is(p.diagnostics.length, 1, p.diagnostics.map(briefly).join('\n'));
  return p.diagnostics[0]!;
};
const t = (name: string, fn: () => Promise<void>, ms = 10_000): void => test(name, withTimeout(ms, fn));
const wf = (body: string): string => `workflows:\n  - name: a\n    commands: [echo]\n${body}`;

t('values no machine could satisfy are DS0019 at their place', async () => {
  const cases: [string, string, number, number][] = [
    ['    ports: 1e9\n', '`ports` in workflow `a` is out of bounds: the most is 100', 4, 12],
    ['    retry: 11\n', '`retry` in workflow `a` is out of bounds: the most is 10', 4, 12],
    ['    resources:\n      cpu: 1e100\n', '`resources.cpu` in workflow `a` is out of bounds: the most is 1024', 5, 12],
    ['    resources:\n      cpu: 0.001\n', '`resources.cpu` in workflow `a` is out of bounds: the least is 0.01', 5, 12],
    ['    resources:\n      memory: 0.0000001MB\n', '`resources.memory` in workflow `a` is out of bounds: the least is 6MiB', 5, 15],
    ['    resources:\n      memory: 100TB\n', '`resources.memory` in workflow `a` is out of bounds: the most is 32TiB', 5, 15],
    ['    resources:\n      shm_size: 1KB\n', '`resources.shm_size` in workflow `a` is out of bounds: the least is 1MiB', 5, 17],
    ['    resources:\n      gpu: 99999999999999999999999\n', '`resources.gpu` in workflow `a` is out of bounds: the most is 16', 5, 12],
    ['    resources:\n      gpu: {count: 17}\n', '`resources.gpu.count` in workflow `a` is out of bounds: the most is 16', 5, 20],
    ['    resources:\n      gpu: {memory: 2TB}\n', '`resources.gpu.memory` in workflow `a` is out of bounds: the most is 512GiB', 5, 21],
  ];
  for (const [body, message, line, col] of cases) {
    const d = one(await load(wf(body)));
    assert.equal([d.code, d.message, d.location?.line, d.location?.col], ['DS0019', message, line, col], body);
    assert.equal(d.scope, { kind: 'workflows', names: ['a'] });
  }
});

t('image names Docker would refuse are DS0020; a secret in an image is DS0021', async () => {
  const cases: [string, string, string][] = [
    ['""', 'DS0020', 'invalid image `` in workflow `a`: the image name is empty'],
    ['a b c', 'DS0020', 'invalid image `a b c` in workflow `a`: an image name cannot contain spaces'],
    ['Ubuntu', 'DS0020', 'invalid image `Ubuntu` in workflow `a`: an image name must be lower case (a registry host before the first `/` may not be)'],
    ['ubuntu::1', 'DS0020', 'invalid image `ubuntu::1` in workflow `a`: it is not a valid image reference (expected NAME[:TAG][@DIGEST], e.g. python:3.11-slim or ghcr.io/org/image:v1)'],
    [`${'x'.repeat(100_000)}`, 'DS0020', `invalid image \`${'x'.repeat(57)}…\` in workflow \`a\`: the image name is 100000 characters long; Docker allows 255 for the name`],
    ['"${{ secrets.TOKEN }}"', 'DS0021', '`image` in workflow `a` reads a secret; image names are stored and shown, so they cannot hold one'],
  ];
  for (const [image, code, message] of cases) {
    const d = one(await load(wf(`    image: ${image}\n`)));
    assert.equal([d.code, d.message, d.location?.line], [code, message, 4], image.slice(0, 40));
  }
  assert.equal((await load(wf('    image: ghcr.io/org/img:v1.2@sha256:' + 'a'.repeat(64) + '\n'))).diagnostics, []);
});

t('an image from a variable is checked once interpolated, at its place', async () => {
  const root = project({
    '.dstack/workflows.yaml': wf('    image: ${{ img }}\n'),
    '.dstack/variables.yaml': 'variables:\n  global:\n    img: Not An Image\n',
  });
  const d = one(await loadProject(root));
  assert.equal([d.code, d.message, d.location?.line, d.location?.col], ['DS0020', 'invalid image `Not An Image` of workflow `a`: an image name cannot contain spaces', 4, 12]);
});

t('names long enough to break folder names are DS0019', async () => {
  const name = 'n'.repeat(300);
  const d = one(await load(`workflows:\n  - name: ${name}\n    commands: [echo]\n`));
  assert.is(d.code, 'DS0019');
  assert.is(d.message, `workflow name \`${'n'.repeat(57)}…\` is 300 characters long; the most is 128`);
});

t('YAML alias bombs, undefined, self-containing and too many aliases are DS0018, located', async () => {
  const bomb = ['a: &a [x,x,x,x,x,x,x,x,x]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]', 'workflows: [*c]', ''].join('\n');
  const d1 = one(await load(bomb));
  assert.equal([d1.code, d1.message, d1.location?.line], ['DS0018', 'YAML aliases here expand to too many values (more than 100 repeats)', 2]);
  const d2 = one(await load('workflows:\n  - *nope\n'));
  assert.equal([d2.code, d2.message, d2.location?.line, d2.location?.col], ['DS0018', 'YAML alias `*nope` names no anchor before it', 2, 5]);
  const d3 = one(await load('workflows: &w\n  - name: a\n    deps: *w\n'));
  assert.equal([d3.code, d3.message], ['DS0018', 'YAML alias `*w` is inside the value it names']);
  const many = `x: &x 1\nworkflows:\n  - name: a\n    commands: [${Array(150).fill('*x').join(', ')}]\n`;
  const d4 = one(await load(many));
  assert.equal([d4.code, d4.message], ['DS0018', 'more than 100 YAML aliases in .dstack/workflows.yaml']);
  assert.equal(d4.scope, { kind: 'file', file: '.dstack/workflows.yaml', workflows: ['a'] });
  const ok = await load('workflows:\n  - name: a\n    env: &env [A=1]\n  - name: b\n    env: *env\n');
  assert.equal([ok.diagnostics, ok.workflows.get('b')!.env], [[], [{ name: 'A', value: '1' }]]);
});

t('deep nesting is malformed YAML, not a crash', async () => {
  const d = one(await load(`workflows:\n  - name: a\n    env: ${'['.repeat(5000)}${']'.repeat(5000)}\n`));
  assert.equal([d.code, d.message], ['DS0001', 'malformed YAML: values nested too deeply']);
});

t('only regular files under the cap are read: FIFO, directory, device, dangling link, too large', async () => {
  const root = project({ '.dstack/workflows/ok.yaml': 'workflows:\n  - name: ok\n    commands: [echo]\n' });
  const w = join(root, '.dstack/workflows');
  execFileSync('mkfifo', [join(w, 'fifo.yaml')]);
  mkdirSync(join(w, 'dir.yaml'));
  symlinkSync('/dev/zero', join(w, 'zero.yaml'));
  symlinkSync(join(w, 'missing'), join(w, 'dangling.yaml'));
  writeFileSync(join(w, 'huge.yaml'), `workflows: []\n#${'x'.repeat(MAX_FILE_BYTES)}\n`);
  const p = await loadProject(root);
  assert.equal([...p.workflows.keys()], ['ok']);
  assert.equal(p.diagnostics.map((d) => [d.code, d.message, d.scope.kind]), [
    ['DS0017', '.dstack/workflows/dangling.yaml cannot be read: it does not exist (a dangling symlink?)', 'file'],
    ['DS0017', '.dstack/workflows/dir.yaml cannot be read: it is a directory', 'file'],
    ['DS0017', '.dstack/workflows/fifo.yaml cannot be read: it is a FIFO', 'file'],
    ['DS0017', '.dstack/workflows/huge.yaml cannot be read: it is larger than 1024 KiB', 'file'],
    ['DS0017', '.dstack/workflows/zero.yaml cannot be read: it is a device', 'file'],
  ]);
  assert.equal(readProjectFile(w, 'ok.yaml'), { ok: true, text: 'workflows:\n  - name: ok\n    commands: [echo]\n' });
});

t('a YAML syntax error takes down its own file only; names made out of it say why they cannot run', async () => {
  const p = await loadProject(project({
    '.dstack/workflows.yaml': 'workflows:\n  - name: good\n    commands: [echo]\n',
    '.dstack/workflows/bad.yaml': 'workflows:\n  - name: lost\n    commands: [echo\n',
  }));
  assert.equal([...p.workflows.keys()], ['good']);
  const d = one(p);
  assert.equal([d.code, d.scope], ['DS0001', { kind: 'file', file: '.dstack/workflows/bad.yaml', workflows: ['lost'] }]);
});

t('a broken variables.yaml blocks the whole project', async () => {
  const p = await loadProject(project({ '.dstack/workflows.yaml': wf(''), '.dstack/variables.yaml': 'variables: [\n' }));
  assert.equal(one(p).scope, { kind: 'project' });
});

t('__proto__ as a variable or section name is refused, and reaches no prototype', async () => {
  const p = await loadProject(project({
    '.dstack/workflows.yaml': wf(''),
    '.dstack/variables.yaml': 'variables:\n  global:\n    __proto__: x\n  __proto__:\n    y: 1\n',
  }));
  assert.equal(p.diagnostics.map((d) => [d.code, d.scope.kind, d.location?.line]), [['DS0003', 'project', 3], ['DS0003', 'project', 5]]);
  assert.equal(p.variables.global, {});
  assert.is(({} as Record<string, unknown>)['y'], undefined);
});

t('whole-project checks: unknown deps, cycles and unknown variables, each on its own workflows', async () => {
  const p = await load(`workflows:
  - name: ok
    commands: [echo]
  - name: lost
    deps: [nowhere]
  - name: x
    deps: [y]
  - name: y
    deps: [x]
  - name: v
    commands:
      - echo \${{ nope }}
`);
  assert.equal([...p.workflows.keys()], ['ok', 'lost', 'x', 'y', 'v']);
  assert.equal(p.diagnostics.map((d) => [d.code, d.scope]), [
    ['DS0006', { kind: 'workflows', names: ['lost'] }],
    ['DS0007', { kind: 'workflows', names: ['x', 'y'] }],
    ['DS0008', { kind: 'workflows', names: ['v'] }],
  ]);
  assert.is(p.diagnostics[1]!.message, 'dependency cycle: x → y (.dstack/workflows.yaml:7:12), y → x (.dstack/workflows.yaml:9:12)');
});

t('a name given twice is DS0005 on that name, even when the first is broken', async () => {
  const p = await load('workflows:\n  - name: a\n    provider: code\n  - name: a\n    commands: [echo]\n  - name: b\n    commands: [echo]\n');
  assert.equal(p.diagnostics.map((d) => [d.code, d.scope]), [
    ['DS0027', { kind: 'workflows', names: ['a'] }],
    ['DS0005', { kind: 'workflows', names: ['a'] }],
  ]);
  assert.equal([...p.workflows.keys()], ['b']);
});

t('a 5,000-workflow chain loads and is checked without recursion', async () => {
  const n = 5000;
  const lines = ['workflows:'];
  for (let i = 0; i < n; i++) lines.push(`  - name: w${i}`, '    commands: [echo]', ...(i ? [`    deps: [w${i - 1}]`] : []));
  lines.push('  - name: loop-a', '    deps: [loop-b]', '  - name: loop-b', `    deps: [w${n - 1}, loop-a]`);
  const p = await load(`${lines.join('\n')}\n`);
  assert.is(p.workflows.size, n + 2);
  assert.equal(p.diagnostics.map((d) => [d.code, d.scope]), [['DS0007', { kind: 'workflows', names: ['loop-a', 'loop-b'] }]]);
}, 60_000);

test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

test.run();
