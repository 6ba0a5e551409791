import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError, DstackErrors, formatError } from '../../src/engine/errors.js';
import { planRun } from '../../src/engine/plan.js';
import type { Project } from '../../src/engine/types.js';
import { loadProject } from '../../src/engine/workflow/load.js';
import { withTimeout } from '../helpers/timeout.js';

const roots: string[] = [];
async function load(yaml: string): Promise<Project> {
  const root = mkdtempSync(join(tmpdir(), 'dstack-plan-'));
  roots.push(root);
  mkdirSync(join(root, '.dstack'));
  writeFileSync(join(root, '.dstack/workflows.yaml'), yaml);
  return loadProject(root);
}
function planError(fn: () => unknown): DstackError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DstackError) return e;
    throw e;
  }
  throw new Error('expected an error');
}
const t = (name: string, fn: () => Promise<void>): void => test(name, withTimeout(5000, fn));

const DIAMOND = `workflows:
  - name: train
    deps:
      - workflow: features
      - :base-data
      - prep
  - name: features
    deps: [prep, {tag: vocab}]
  - name: prep
  - name: unrelated
`;

t('deps first in the order written, each once, target last', async () => {
  const p = await load(DIAMOND);
  const plan = planRun(p, 'train');
  assert.equal(plan.jobs.map((j) => j.workflow.name), ['prep', 'features', 'train']);
  assert.equal(plan.jobs.map((j) => j.deps), [[], [0], [1, 0]]);
  assert.equal(plan.jobs.map((j) => j.tagDeps), [[], ['vocab'], ['base-data']]);
});

t('--dep values join the target', async () => {
  const p = await load(DIAMOND);
  const plan = planRun(p, 'prep', ['unrelated', ':pinned']);
  assert.equal(plan.jobs.map((j) => j.workflow.name), ['unrelated', 'prep']);
  assert.equal(plan.jobs[1]!.deps, [0]);
  assert.equal(plan.jobs[1]!.tagDeps, ['pinned']);
});

t('unknown target is DS0006 with did you mean and the known names', async () => {
  const p = await load(DIAMOND);
  const e = planError(() => planRun(p, 'trian'));
  assert.is(
    formatError(e),
    'error DS0006: unknown workflow `trian`; did you mean `train`?\n  = workflows in this project: features, prep, train, unrelated',
  );
});

t('dep on a missing workflow is DS0006 at the dep: exact text', async () => {
  const p = await load('workflows:\n  - name: hello-txt\n  - name: cat-txt\n    deps:\n      - workflow: hello-text\n');
  assert.is(
    formatError(planError(() => planRun(p, 'cat-txt'))),
    [
      'error DS0006: workflow `cat-txt` depends on unknown workflow `hello-text`; did you mean `hello-txt`?',
      '  --> .dstack/workflows.yaml:5:9',
      '  |',
      '5 |       - workflow: hello-text',
      '  |         ^',
      '  = workflows in this project: cat-txt, hello-txt',
    ].join('\n'),
  );
  const e = planError(() => planRun(p, 'hello-txt', ['cat-tx']));
  assert.is(e.message, 'unknown workflow `cat-tx` in --dep; did you mean `cat-txt`?');
  assert.is(e.location, undefined);
});

t('a cycle names every edge with its location: exact text', async () => {
  const p = await load(`workflows:
  - name: a
    deps:
      - workflow: b
  - name: b
    deps: [c]
  - name: c
    deps:
      - a
`);
  assert.is(
    formatError(planError(() => planRun(p, 'a'))),
    [
      'error DS0007: dependency cycle: a → b (.dstack/workflows.yaml:4:9), b → c (.dstack/workflows.yaml:6:12), c → a (.dstack/workflows.yaml:9:9)',
      '  --> .dstack/workflows.yaml:4:9',
      '  |',
      '4 |       - workflow: b',
      '  |         ^',
      '  = remove one of these deps',
    ].join('\n'),
  );
});

t('a cycle entered from outside and a self-dep', async () => {
  const p = await load('workflows:\n  - name: top\n    deps: [x]\n  - name: x\n    deps: [y]\n  - name: y\n    deps: [x]\n  - name: self\n    deps: [self]\n  - name: leaf\n  - name: up\n    deps: [leaf]\n');
  assert.is(planError(() => planRun(p, 'top')).message,
    'dependency cycle: x → y (.dstack/workflows.yaml:5:12), y → x (.dstack/workflows.yaml:7:12)');
  assert.is(planError(() => planRun(p, 'self')).message, 'dependency cycle: self → self (.dstack/workflows.yaml:9:12)');
  const e = planError(() => planRun(p, 'leaf', ['up']));
  assert.is(e.message, 'dependency cycle: leaf → up (--dep), up → leaf (.dstack/workflows.yaml:12:12)');
  assert.equal(e.location, { file: '.dstack/workflows.yaml', line: 12, col: 12 });
});

t('a 5,000-workflow chain plans in order, without recursion', async () => {
  const n = 5000;
  const yaml = ['workflows:', ...Array.from({ length: n }, (_, i) => `  - name: w${i}\n    deps: [${i ? `w${i - 1}` : ''}]`)].join('\n');
  const plan = planRun(await load(yaml), `w${n - 1}`);
  assert.is(plan.jobs.length, n);
  assert.ok(plan.jobs.every((j, i) => j.workflow.name === `w${i}` && (i === 0 ? j.deps.length === 0 : j.deps[0] === i - 1)));
});

t('a broken dep refuses the run with its own error first, then DS0023 naming it; others plan with notices', async () => {
  const p = await load(`workflows:
  - name: ide
    provider: code
  - name: train
    deps: [ide]
    commands: [echo]
  - name: ok
    commands: [echo]
  - name: abs
    commands: [echo]
    artifacts: [/opt/venv]
`);
  const e = planError(() => planRun(p, 'train'));
  assert.is(
    formatError(e),
    [
      'error DS0027: provider `code` in workflow `ide` is a dev environment, which this dstack cannot run yet; the workflow is not runnable',
      '  --> .dstack/workflows.yaml:3:15',
      '  |',
      '3 |     provider: code',
      '  |               ^',
      '  = the rest of the project runs; for a server of your own, use `provider: bash`, `ports: 1`, and start it on 0.0.0.0:$PORT_0',
      '',
      'error DS0023: workflow `train` cannot run: it depends on `ide`, which has errors (above)',
      '  = fix those, or run a workflow that does not need them',
    ].join('\n'),
  );
  assert.is(e.exitCode, 2);
  assert.is(planError(() => planRun(p, 'ide')).code, 'DS0027');
  const ok = planRun(p, 'ok');
  assert.equal(ok.notices.inPlan, []);
  assert.equal(ok.notices.elsewhere.map((d) => d.code), ['DS0027']);
  const abs = planRun(p, 'abs');
  assert.equal(abs.notices.inPlan, []);
});

t('an unknown target in a project with an unreadable file names the file first', async () => {
  const root = mkdtempSync(join(tmpdir(), 'dstack-plan-'));
  roots.push(root);
  mkdirSync(join(root, '.dstack/workflows'), { recursive: true });
  writeFileSync(join(root, '.dstack/workflows/a.yaml'), 'workflows:\n  - name: a\n');
  writeFileSync(join(root, '.dstack/workflows/b.yaml'), 'workflows: [\n');
  const p = await loadProject(root);
  const e = planError(() => planRun(p, 'b'));
  assert.equal((e as DstackErrors).errors.map((x) => x.code), ['DS0001', 'DS0006']);
  assert.is((e as DstackErrors).errors[1]!.hint, 'it may be in a file that could not be read (above); workflows in this project: a');
});

test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

test.run();
