/** The store's logs read page by page, runs listed by project, and the space of deleted rows given back. */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MIGRATIONS, migrate } from '../../src/engine/store/migrations.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { Store } from '../../src/engine/store/types.js';
import { jobSpec } from '../helpers/spec.js';

const dirs: string[] = [];
const tempHome = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'dstack-space-'));
  dirs.push(d);
  return join(d, 'home');
};

const makeRun = (store: Store, root = '/p', workflows = ['a', 'b']) =>
  store.runs.createRun({
    workflow: workflows.at(-1)!,
    owner: 'o',
    backend: 'local',
    repo: { root, isGit: false },
    args: [],
    jobs: workflows.map((w, i) => ({ spec: jobSpec({ workflow: w }), deps: i ? [i - 1] : [] })),
  });

test('readLogs merges several jobs of many pages each in (time, job, seq) order, and picks up after a seq', () => {
  let t = 1_000;
  const store = openStore(tempHome(), { now: () => t });
  try {
    const { run, jobs } = makeRun(store);
    const [a, b] = jobs.map((j) => j.id) as [(typeof jobs)[0]['id'], (typeof jobs)[0]['id']];
    const expected: string[] = [];
    for (let i = 0; i < 500; i++) {
      t += i % 3 === 0 ? 1 : 0; // ties in time: job order, then seq
      store.logs.appendLog(a, 'stdout', Buffer.from(`a${i} `));
      expected.push(`a${i} `);
      if (i % 2 === 0) {
        store.logs.appendLog(b, 'stderr', Buffer.from(`b${i} `));
        expected.push(`b${i} `);
      }
    }
    const got = [...store.logs.readLogs(run.name)];
    const byTime = [...got].sort((x, y) => x.at - y.at || (x.job === a ? 0 : 1) - (y.job === a ? 0 : 1) || x.seq - y.seq);
    assert.equal(got, byTime);
    assert.is(got.length, expected.length);
    assert.equal(got.filter((r) => r.job === a).map((r) => r.data.toString()), expected.filter((e) => e.startsWith('a')));
    const after = [...store.logs.readLogs(run.name, { after: new Map([[a, 490], [b, 250]]) })];
    assert.equal(after.filter((r) => r.job === a).map((r) => r.seq), [491, 492, 493, 494, 495, 496, 497, 498, 499, 500]);
    assert.is(after.filter((r) => r.job === b).length, 0);
    store.logs.dropLogs(a, 1, 495);
    assert.equal([...store.logs.readLogs(run.name, { after: new Map([[b, 250]]) })].map((r) => r.seq), [496, 497, 498, 499, 500]);
    assert.is(store.logs.appendLog(a, 'stdout', Buffer.from('x')), 501, 'seq goes on after a drop');
  } finally {
    store.close();
  }
});

test('listRuns of a project: its newest runs and its active ones, never another project\'s', () => {
  let t = 1_000;
  const store = openStore(tempHome(), { now: () => t });
  try {
    const old = makeRun(store, '/p'); // stays active, older than the newest 2
    for (let i = 0; i < 3; i++) {
      t += 1000;
      const r = makeRun(store, '/p');
      for (const j of r.jobs) store.runs.setJobStatus(j.id, 'done');
    }
    t += 1000;
    const other = makeRun(store, '/q');
    const names = (rs: readonly { name: string }[]): string[] => rs.map((r) => r.name);
    const p = store.runs.listRuns({ project: '/p', limit: 2 });
    assert.is(p.length, 3);
    assert.is(p.at(-1)!.name, old.run.name, 'the active run comes after the newest');
    assert.not.ok(names(p).includes(other.run.name));
    assert.equal(names(store.runs.listRuns({ project: '/q' })), [other.run.name]);
    assert.is(store.runs.listRuns({ project: '/p', all: true }).length, 4);
    assert.is(store.runs.listRuns({ all: true }).length, 5);
    assert.equal(store.runs.listRuns({ project: '/nowhere' }), []);
    assert.equal(names(store.prune.listPrunableRuns(t + 1, { project: '/q' })), [], 'active runs are never prunable');
    assert.is(store.prune.listPrunableRuns(t + 1, { project: '/p' }).length, 3);
  } finally {
    store.close();
  }
});

const fileSize = (home: string): number =>
  statSync(join(home, 'store.db')).size + (statSync(join(home, 'store.db-wal'), { throwIfNoEntry: false })?.size ?? 0);

function fillLogs(store: Store, mb: number): string {
  const { run, jobs } = makeRun(store, '/p', ['a']);
  const chunk = Buffer.alloc(16 * 1024, 'z');
  for (let i = 0; i < mb * 64; i++) store.logs.appendLog(jobs[0]!.id, 'stdout', chunk);
  store.runs.setJobStatus(jobs[0]!.id, 'done');
  return run.name;
}

test('deleting a run with 20 MB of logs and reclaiming gives the space back (a new store is in incremental mode)', () => {
  const home = tempHome();
  const store = openStore(home);
  try {
    const keep = fillLogs(store, 1);
    const gone = fillLogs(store, 20);
    const before = store.prune.reclaimSpace();
    assert.ok(before.after > 20e6, `filled: ${before.after}`);
    store.runs.deleteRun(gone);
    const space = store.prune.reclaimSpace();
    assert.ok(space.before > 20e6, `before: ${space.before}`);
    assert.ok(space.after < 4e6, `after: ${space.after}`);
    assert.is([...store.logs.readLogs(keep)].length, 64, 'what is kept is intact');
  } finally {
    store.close();
  }
  const raw = new Database(join(home, 'store.db'), { readonly: true });
  assert.is(raw.pragma('auto_vacuum', { simple: true }), 2, 'made incremental from the start: no VACUUM needed');
  raw.close();
});

test('an older store (no auto-vacuum) is converted by one VACUUM when enough is free, and keeps every record', () => {
  const home = tempHome();
  openStore(home).close();
  // Make it as a dstack before incremental mode made it: auto_vacuum off.
  const raw = new Database(join(home, 'store.db'));
  raw.pragma('auto_vacuum = NONE');
  raw.exec('VACUUM');
  assert.is(raw.pragma('auto_vacuum', { simple: true }), 0);
  raw.close();
  const store = openStore(home);
  try {
    const keep = fillLogs(store, 1);
    const gone = fillLogs(store, 12);
    store.runs.deleteRun(gone);
    const space = store.prune.reclaimSpace();
    assert.ok(space.before > 12e6 && space.after < 4e6, JSON.stringify(space));
    assert.is([...store.logs.readLogs(keep)].length, 64);
    assert.ok(store.runs.getRun(keep));
  } finally {
    store.close();
  }
  const after = new Database(join(home, 'store.db'), { readonly: true });
  assert.is(after.pragma('auto_vacuum', { simple: true }), 2, 'converted: the next reclaim is incremental');
  after.close();
  assert.ok(fileSize(home) < 4e6);
});

test('migration 3 moves a reuse origin out of reason and an error code into its column', () => {
  const home = tempHome();
  openStore(home).close();
  const path = join(home, 'store.db');
  // Recreate the store at schema 2 with records as dstack wrote them then.
  rmSync(path);
  rmSync(`${path}-wal`, { force: true });
  rmSync(`${path}-shm`, { force: true });
  const db = new Database(path);
  migrate(db, MIGRATIONS.slice(0, 2));
  db.exec(`
    INSERT INTO runs (name, workflow, owner, backend, repo, repo_root, args, status, submitted_at)
      VALUES ('wet-mangust-1', 'b', 'o', 'local', '{"root":"/p","isGit":false}', '/p', '[]', 'failed', 1);
    INSERT INTO jobs (id, run, idx, workflow, spec, deps, status, reason, submitted_at) VALUES
      ('wet-mangust-1/a', 'wet-mangust-1', 0, 'a', '{"workflow":"a","env":{}}', '[]', 'done', 'cached: old-cat-1/a', 1),
      ('wet-mangust-1/b', 'wet-mangust-1', 1, 'b', '{"workflow":"b","env":{}}', '[]', 'failed', 'DS0201: image x is not available', 1);
  `);
  db.close();
  const store = openStore(home);
  try {
    const [a, b] = store.runs.jobs('wet-mangust-1');
    assert.is(a!.cachedFrom, 'old-cat-1/a');
    assert.is(a!.reason, undefined);
    assert.is(b!.errorCode, 'DS0201');
    assert.is(b!.reason, 'DS0201: image x is not available');
  } finally {
    store.close();
  }
});

test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test.run();
