import { execFileSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import { loadProject } from '../../src/engine/workflow/load.js';
import { loadProjectCached } from '../../src/engine/workflow/project-cache.js';
import { withTimeout } from '../helpers/timeout.js';

const t = (name: string, fn: () => Promise<void>): void => test(name, withTimeout(10_000, fn));
const dirs: string[] = [];
const PAST = new Date(Date.now() - 3600_000);

/**
 * A project and a cache folder. Files get an mtime an hour ago, but their ctime is now, which the
 * racy check also looks at: tests that want entries written pass racyMs 0.
 */
function project(files: Record<string, string>): { root: string; dir: string; write: (rel: string, text: string, past?: boolean) => void } {
  const root = mkdtempSync(join(tmpdir(), 'dstack-pc-'));
  dirs.push(root);
  const write = (rel: string, text: string, past = true): void => {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
    if (past) utimesSync(join(root, rel), PAST, PAST);
  };
  for (const [rel, text] of Object.entries(files)) write(rel, text);
  return { root, dir: join(root, '.cache'), write };
}

const YAML = `workflows:
  - name: prepare
    image: python:3.11
    commands: [python prepare.py]
    artifacts: [data]
    env: [A=1, B]
  - name: train
    deps: [prepare, ':model']
    provider: docker
    image: busybox
    resources: {gpu: 1, memory: 2GB}
    inputs: [src]
`;

async function load(root: string, dir: string, racyMs = 0): Promise<{ hit: boolean; project: Awaited<ReturnType<typeof loadProject>> }> {
  let hit: boolean | undefined;
  const project = await loadProjectCached(root, { dir, racyMs, onLoad: (h) => (hit = h) });
  return { hit: hit!, project };
}

t('a hit is exactly what loadProject returns (Maps, locations, absent fields)', async () => {
  const p = project({ '.dstack/workflows.yaml': YAML, '.dstack/variables.yaml': 'variables:\n  global:\n    seed: "1"\n' });
  const first = await load(p.root, p.dir);
  assert.is(first.hit, false);
  const second = await load(p.root, p.dir);
  assert.is(second.hit, true);
  assert.ok(isDeepStrictEqual(second.project, await loadProject(p.root)));
});

t('an edited, added or removed file misses', async () => {
  const p = project({ '.dstack/workflows.yaml': YAML });
  await load(p.root, p.dir);
  assert.is((await load(p.root, p.dir)).hit, true);
  // Same size, an older mtime than before: the key still differs (mtime and ctime).
  p.write('.dstack/workflows.yaml', YAML.replace('prepare.py', 'prepara.py'));
  const edited = await load(p.root, p.dir);
  assert.is(edited.hit, false);
  assert.equal(edited.project.workflows.get('prepare')?.commands, ['python prepara.py']);
  p.write('.dstack/variables.yaml', 'variables:\n  global:\n    seed: "2"\n');
  const added = await load(p.root, p.dir);
  assert.is(added.hit, false);
  assert.is(added.project.variables.global['seed'], '2');
  rmSync(join(p.root, '.dstack/variables.yaml'));
  const removed = await load(p.root, p.dir);
  assert.is(removed.hit, false);
  assert.equal(removed.project.variables.global, {});
});

t('a file modified in the racy window is not cached', async () => {
  const p = project({});
  p.write('.dstack/workflows.yaml', YAML, false);
  await load(p.root, p.dir, 2000);
  assert.is((await load(p.root, p.dir, 2000)).hit, false);
  assert.is((await load(p.root, p.dir, 0)).hit, false, 'written now, with no racy window');
  assert.is((await load(p.root, p.dir, 0)).hit, true);
});

t('a project with broken workflows is cached with its diagnostics, reported the same on a hit', async () => {
  const p = project({
    '.dstack/workflows.yaml': 'workflows:\n  - name: a\n    commands: [echo]\n  - name: b\n    provider: code\n',
    '.dstack/workflows/x.yaml': 'workflows:\n  - name: c\n    commands: [echo\n',
  });
  const first = await load(p.root, p.dir);
  const second = await load(p.root, p.dir);
  assert.is(first.hit, false);
  assert.is(second.hit, true);
  assert.equal([...second.project.workflows.keys()], ['a']);
  assert.equal(second.project.diagnostics.map((d) => [d.code, d.scope.kind, d.lineText]), [
    ['DS0027', 'workflows', '    provider: code'],
    ['DS0001', 'file', '    commands: [echo'],
  ]);
  assert.ok(isDeepStrictEqual(second.project, await loadProject(p.root)));
});

t('a FIFO, a directory or a device put in a file\'s place misses, each reported as what it is', async () => {
  const p = project({ '.dstack/workflows/ok.yaml': YAML });
  const f = join(p.root, '.dstack/workflows/x.yaml');
  const seen: string[] = [];
  const messageOf = async (): Promise<string> => {
    const r = await load(p.root, p.dir);
    seen.push(`${r.hit}`);
    return r.project.diagnostics.map((d) => d.message).join('; ');
  };
  execFileSync('mkfifo', [f]);
  assert.is(await messageOf(), '.dstack/workflows/x.yaml cannot be read: it is a FIFO');
  assert.is(await messageOf(), '.dstack/workflows/x.yaml cannot be read: it is a FIFO');
  rmSync(f);
  mkdirSync(f);
  assert.is(await messageOf(), '.dstack/workflows/x.yaml cannot be read: it is a directory');
  rmSync(f, { recursive: true });
  symlinkSync('/dev/zero', f);
  assert.is(await messageOf(), '.dstack/workflows/x.yaml cannot be read: it is a device');
  assert.equal(seen, ['false', 'true', 'false', 'false']);
});

t('no workflows file is never cached', async () => {
  const p = project({ '.dstack/variables.yaml': 'variables: {}\n' });
  for (let i = 0; i < 2; i++) {
    try {
      await loadProjectCached(p.root, { dir: p.dir, racyMs: 0 });
      assert.unreachable('should fail');
    } catch (e) {
      assert.instance(e, DstackError);
      assert.is((e as DstackError).code, 'DS0012');
    }
  }
  assert.equal(readdirSync(p.root).includes('.cache') ? readdirSync(p.dir) : [], []);
});

t('a damaged entry is parsed again', async () => {
  const p = project({ '.dstack/workflows.yaml': YAML });
  await load(p.root, p.dir);
  for (const name of readdirSync(p.dir)) writeFileSync(join(p.dir, name), 'garbage');
  const again = await load(p.root, p.dir);
  assert.is(again.hit, false);
  assert.ok(isDeepStrictEqual(again.project, await loadProject(p.root)));
});

test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
test.run();
