/**
 * The local backend against the real Docker engine, for the tests of `test/integration/local-backend*.test.ts`:
 * a home, a project with one file, its snapshot, and the backend whose containers carry the test file's
 * label. The state is exported as live bindings, set by `setUp` in a file's `test.before`.
 */
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import type { Manifest } from '../../src/artifacts/types.js';
import { localPlugin } from '../../src/backends/local/index.js';
import type { Backend, Machine, RunningJob } from '../../src/engine/backend.js';
import type { JobSpec } from '../../src/engine/types.js';
import { closeTestDocker, containersLabelled, ensureBusybox, sweepContainers } from './docker.js';
import { jobHarness, type Harness } from './job-harness.js';
export { rejectsWith } from './errors.js';

export let home = '';
export let project = '';
export let backend: Backend;
/** The code snapshot as the executor hands it over: a manifest of the project's files. */
export let snap: Manifest;
let jobCounter = 0;

/** Every container of the backend carries `dstack.test=<label>`. */
export async function setUp(label: string): Promise<void> {
  await ensureBusybox();
  home = await mkdtemp(join(tmpdir(), 'dstack-local-home-'));
  project = await mkdtemp(join(tmpdir(), 'dstack-local-project-'));
  await writeFile(join(project, 'hello.txt'), 'hello from the snapshot\n');
  snap = (await new LocalArtifactStore({ home }).save(project, [{ path: 'hello.txt', mount: false }])).manifest;
  backend = localPlugin.open({ home, settings: { labels: { 'dstack.test': label } } });
}

/** No container of the file's label or of this home is left: a file's last test. */
export async function assertNothingLeft(label: string): Promise<void> {
  const left = await containersLabelled(`dstack.test=${label}`);
  assert.equal(left, [], `leaked: ${left.map((c) => c.id.slice(0, 12)).join(', ')}`);
  assert.equal(await containersLabelled(`dstack.home=${home}`), []);
}

export async function tearDown(label: string): Promise<void> {
  await sweepContainers(`dstack.test=${label}`);
  await backend.close();
  closeTestDocker();
  await rm(home, { recursive: true, force: true });
  await rm(project, { recursive: true, force: true });
}

export function harness(s: JobSpec): Harness {
  jobCounter += 1;
  return jobHarness(s, `test-run-${process.pid}-${jobCounter}`);
}

export const stageInput = (store: LocalArtifactStore, deps: Manifest[] = []) => ({ snapshot: snap, repoRoot: project, deps, store });

export interface Started {
  readonly h: Harness;
  readonly machine: Machine;
  readonly job: RunningJob;
  readonly out: () => string;
  readonly err: () => string;
  readonly container: () => string;
}

/** provision → bootstrap → stage → start; the caller tears down in `finally`. */
export async function startJob(s: JobSpec, env: Record<string, string> = {}, onMachine?: (m: Machine) => void): Promise<Started> {
  const h = harness(s);
  const machine = await backend.provision(h.ctx);
  onMachine?.(machine);
  await machine.bootstrap(h.ctx);
  await machine.stage(h.ctx, stageInput(new LocalArtifactStore({ home })));
  const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  const job = await machine.start(h.ctx, env, (stream, chunk) => chunks[stream].push(chunk));
  return {
    h,
    machine,
    job,
    out: () => Buffer.concat(chunks.stdout).toString('utf8'),
    err: () => Buffer.concat(chunks.stderr).toString('utf8'),
    container: () => String(h.handles.at(-1)?.container),
  };
}

/** Runs `fn` with a started job and always tears it down. */
export async function withJob(s: JobSpec, fn: (j: Started) => Promise<void>, env: Record<string, string> = {}): Promise<void> {
  let machine: Machine | undefined;
  try {
    const j = await startJob(s, env, (m) => (machine = m));
    await fn(j);
  } finally {
    await machine?.teardown();
  }
}


/** Saves the files `files` (path → content; a `->` value makes a symlink, a trailing `/` a folder) as artifacts. */
export async function depManifest(store: LocalArtifactStore, files: Record<string, string>, paths: string[], exec: string[] = []): Promise<Manifest> {
  const src = await mkdtemp(join(tmpdir(), 'dstack-dep-'));
  try {
    for (const [path, content] of Object.entries(files)) {
      const abs = join(src, path);
      if (path.endsWith('/')) {
        await mkdir(abs, { recursive: true });
        continue;
      }
      await mkdir(join(abs, '..'), { recursive: true });
      if (content.startsWith('->')) await symlink(content.slice(2), abs);
      else await writeFile(abs, content);
      if (exec.includes(path)) await chmod(abs, 0o755);
    }
    return (await store.save(src, paths.map((path) => ({ path, mount: false })))).manifest;
  } finally {
    await rm(src, { recursive: true, force: true });
  }
}
