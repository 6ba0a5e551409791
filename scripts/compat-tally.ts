// The 0.7 corpus tally for issue 12's closing note: for every file of the dstack 0.7 docs corpus
// (shared/compat/dstack-0.7, or $DSTACK_COMPAT_CORPUS) and of our own (test/fixtures/compat-0.7),
// loaded as a project of its own, what each workflow does — refused (with the code and why), planned
// with a warning, or planned — and whether a planned one could run on THIS machine now: every image
// of its plan present in the local Docker engine (nothing is pulled; the tests' machine reaches no
// registry, so a plan that needs `python:3.10-slim` is counted "needs a pull", not "runs").
// test/e2e/envs.test.ts runs the corpus's own pattern (an environment kept as an absolute-path
// artifact) on a local image.
//
// Usage: node --import tsx scripts/compat-tally.ts [--files]   (--files: one line per file)
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { DockerClient, isStatus } from '../src/backends/docker/docker.js';
import { DstackError, DstackErrors } from '../src/engine/errors.js';
import { planRun } from '../src/engine/plan.js';
import { resolveJob } from '../src/engine/resolve.js';
import type { Project } from '../src/engine/types.js';
import { loadProject } from '../src/engine/workflow/load.js';

const root = new URL('..', import.meta.url).pathname;
const perFile = process.argv.includes('--files');

function sharedCorpus(): string | undefined {
  if (process.env.DSTACK_COMPAT_CORPUS) return process.env.DSTACK_COMPAT_CORPUS;
  for (let dir = resolve(root); dirname(dir) !== dir; dir = dirname(dir)) {
    const c = join(dirname(dir), 'shared/compat/dstack-0.7');
    if (existsSync(c)) return c;
  }
  return undefined;
}

type Outcome = { kind: 'runs' | 'needs-pull' | 'warns' | 'refused'; why: string };

const docker = new DockerClient();
const present = new Map<string, Promise<boolean>>();
const hasImage = (image: string): Promise<boolean> => {
  let p = present.get(image);
  if (!p) {
    p = docker.imageInspect(image).then(() => true, (e: unknown) => (isStatus(e, 404) ? false : Promise.reject(e)));
    present.set(image, p);
  }
  return p;
};

async function outcomeOf(project: Project, name: string): Promise<Outcome> {
  try {
    const plan = planRun(project, name);
    const warning = plan.notices.inPlan.find((d) => d.severity === 'warning');
    const images = plan.jobs.map((j) => resolveJob(j.workflow, { project, runName: 'tally-1', args: [], overrides: {}, hostEnv: {} }).image);
    const missing = [];
    for (const i of new Set(images)) if (!(await hasImage(i))) missing.push(i);
    if (warning) return { kind: 'warns', why: `${warning.code} ${warning.message}` };
    return missing.length ? { kind: 'needs-pull', why: missing.join(', ') } : { kind: 'runs', why: images.join(', ') };
  } catch (e) {
    if (!(e instanceof DstackError)) throw e;
    const first = e instanceof DstackErrors ? e.errors[0]! : e;
    return { kind: 'refused', why: `${first.code} ${first.message.split('\n')[0]}` };
  }
}

/** The worst outcome of a file's workflows: refused > warns > needs-pull > runs. */
const RANK = ['runs', 'needs-pull', 'warns', 'refused'] as const;

async function tallyCorpus(label: string, dir: string): Promise<void> {
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
  const byKind = new Map<string, number>();
  const why = new Map<string, number>();
  for (const file of files) {
    const tmp = mkdtempSync(join(tmpdir(), 'dstack-tally-'));
    try {
      mkdirSync(join(tmp, '.dstack'));
      writeFileSync(join(tmp, '.dstack/workflows.yaml'), readFileSync(join(dir, file), 'utf8'));
      const project = await loadProject(tmp);
      const names = new Set(project.workflows.keys());
      for (const d of project.diagnostics) if (d.scope.kind === 'workflows') d.scope.names.forEach((n) => names.add(n));
      const outcomes = await Promise.all([...names].map(async (n) => [n, await outcomeOf(project, n)] as const));
      const worst = outcomes.reduce((w, [, o]) => (RANK.indexOf(o.kind) > RANK.indexOf(w.kind) ? o : w), { kind: 'runs', why: '' } as Outcome);
      byKind.set(worst.kind, (byKind.get(worst.kind) ?? 0) + 1);
      if (worst.kind !== 'runs') {
        const key = worst.kind === 'needs-pull' ? `needs-pull: ${worst.why}` : `${worst.kind}: ${worst.why.replace(/`[^`]*`/g, '`…`')}`;
        why.set(key, (why.get(key) ?? 0) + 1);
      }
      if (perFile) console.log(`${label}  ${file}: ${outcomes.map(([n, o]) => `${n} ${o.kind} (${o.why})`).join('; ')}`);
    } catch (e) {
      byKind.set('load error', (byKind.get('load error') ?? 0) + 1);
      console.log(`${label}  ${file}: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  console.log(`\n${label}: ${files.length} files — ${RANK.map((k) => `${byKind.get(k) ?? 0} ${k}`).join(', ')}${byKind.has('load error') ? `, ${byKind.get('load error')} load error` : ''}`);
  for (const [k, n] of [...why].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(3)}  ${k}`);
}

const shared = sharedCorpus();
if (shared) await tallyCorpus('dstack 0.7 docs', shared);
else console.log('dstack 0.7 docs corpus not found (set DSTACK_COMPAT_CORPUS)');
await tallyCorpus('ours', join(root, 'test/fixtures/compat-0.7'));
docker.close();
