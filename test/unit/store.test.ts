import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/engine/store/migrations.js';
import { ADJECTIVES, ANIMALS, parseRunName, randomPrefix } from '../../src/engine/store/names.js';
import { openStore, type OpenStoreOptions } from '../../src/engine/store/sqlite.js';
import { aggregateStatus } from '../../src/engine/store/status.js';
import type { NewRun, Store } from '../../src/engine/store/types.js';
import { asJobId, type JobSpec, type RepoInfo } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';

const tmpDirs: string[] = [];
function tempHome(): string {
  const d = mkdtempSync(join(tmpdir(), 'dstack-store-'));
  tmpDirs.push(d);
  return join(d, 'home');
}

function withStore(fn: (store: Store, clock: { t: number }) => void, options: OpenStoreOptions = {}): () => void {
  return () => {
    const clock = { t: 1_700_000_000_000 };
    const store = openStore(tempHome(), { now: () => clock.t, ...options });
    try {
      fn(store, clock);
    } finally {
      store.close();
    }
  };
}

const spec = (workflow: string, extra: Partial<JobSpec> = {}): JobSpec =>
  jobSpec({
    workflow,
    image: 'python:3.10',
    command: ['/bin/sh', '-c', 'set -e\npython train.py'],
    env: { FOO: 'bar' },
    artifacts: [{ path: 'out', mount: false }],
    resources: { cpu: 2, memory: 1024, gpu: { count: 1, name: 'T4' } },
    variables: { epochs: '3' },
    args: ['--lr', '0.1'],
    ...extra,
  });

const repo: RepoInfo = { root: '/home/u/proj', isGit: true, branch: 'main', commit: 'abc123' };

const newRun = (extra: Partial<NewRun> = {}): NewRun => ({
  workflow: 'train',
  owner: 'alice',
  backend: 'local',
  repo,
  args: ['--epochs', '3'],
  jobs: [
    { spec: spec('prepare'), deps: [] },
    { spec: spec('train'), deps: [0] },
  ],
  ...extra,
});

test(
  'createRun, getRun, listRuns and jobs round-trip every field, JSON included',
  withStore((store, clock) => {
    const { run, jobs } = store.runs.createRun(newRun({ tag: 'v1', pid: 4242, hostname: 'box' }));
    assert.ok(parseRunName(run.name), run.name);
    assert.equal(run, {
      name: run.name,
      workflow: 'train',
      owner: 'alice',
      backend: 'local',
      repo,
      args: ['--epochs', '3'],
      tag: 'v1',
      status: 'submitted',
      submittedAt: clock.t,
      pid: 4242,
      hostname: 'box',
    });
    assert.equal(store.runs.getRun(run.name), run);
    assert.equal(store.runs.listRuns(), [run]);
    assert.is(jobs.length, 2);
    const [prep, train] = jobs;
    assert.equal(train, {
      id: `${run.name}/train`,
      run: run.name,
      workflow: 'train',
      index: 1,
      spec: spec('train'),
      deps: [`${run.name}/prepare`],
      status: 'submitted',
      submittedAt: clock.t,
      history: [{ status: 'submitted', at: clock.t }],
    });
    assert.equal(prep?.deps, []);
    assert.equal(store.runs.jobs(run.name), jobs);
    assert.equal(store.runs.getJob(asJobId(`${run.name}/train`)), train);
    assert.is(store.runs.getRun('nope-nope-1'), undefined);
    assert.is(store.runs.getJob(asJobId('nope-nope-1/x')), undefined);
    assert.equal(store.runs.jobs('nope-nope-1'), []);

    const handle = { container: 'c0ffee', host: 'box', port: 22, spot: false, extra: null };
    store.runs.setJobHandle(asJobId(`${run.name}/prepare`), handle);
    const manifest = { version: 1 as const, entries: [], size: 0 };
    store.runs.setJobManifest(asJobId(`${run.name}/prepare`), manifest);
    store.runs.setRunOwnerProcess(run.name, 77, 'other');
    const j = store.runs.getJob(asJobId(`${run.name}/prepare`));
    assert.equal(j?.handle, handle);
    assert.equal(j?.manifest, manifest);
    store.runs.setJobHandle(asJobId(`${run.name}/prepare`), undefined);
    assert.is(store.runs.getJob(asJobId(`${run.name}/prepare`))?.handle, undefined);
    assert.is(store.runs.getRun(run.name)?.pid, 77);
    assert.is(store.runs.getRun(run.name)?.hostname, 'other');
    assert.throws(() => store.runs.setJobHandle(asJobId('nope-nope-1/x'), handle), /no such record/);
  }),
);

test(
  'createRun refuses a dep that is not an earlier job, and leaves nothing behind',
  withStore((store) => {
    assert.throws(() => store.runs.createRun(newRun({ jobs: [{ spec: spec('a'), deps: [0] }] })), /not an earlier job/);
    assert.equal(store.runs.listRuns({ all: true }), []);
  }),
);

test('run names are adjective-animal-N with a per-prefix counter; the random source is injectable', () => {
  assert.ok(ADJECTIVES.length >= 60 && ANIMALS.length >= 60);
  assert.is(new Set(ADJECTIVES).size, ADJECTIVES.length);
  assert.is(new Set(ANIMALS).size, ANIMALS.length);
  assert.is(randomPrefix(() => 0), `${ADJECTIVES[0]}-${ANIMALS[0]}`);
  assert.is(randomPrefix(() => 0.9999999), `${ADJECTIVES.at(-1)}-${ANIMALS.at(-1)}`);
  assert.is(randomPrefix(() => 1), `${ADJECTIVES.at(-1)}-${ANIMALS.at(-1)}`);
  assert.equal(parseRunName('wet-mangust-12'), { prefix: 'wet-mangust', n: 12 });
  assert.is(parseRunName('wet-mangust'), undefined);

  withStore(
    (store) => {
      const names = [1, 2, 3].map(() => store.runs.createRun(newRun()).run.name);
      const p = `${ADJECTIVES[0]}-${ANIMALS[0]}`;
      assert.equal(names, [`${p}-1`, `${p}-2`, `${p}-3`]);
      // A reserved name is skipped by later allocations and used by the createRun that passes it.
      const reserved = store.runs.reserveName();
      assert.is(reserved, `${p}-4`);
      assert.is(store.runs.createRun(newRun()).run.name, `${p}-5`);
      assert.is(store.runs.createRun(newRun({ name: reserved })).run.name, reserved);
      assert.throws(() => store.runs.createRun(newRun({ name: reserved })), /UNIQUE/);
      // A deleted run's name is never handed out again.
      store.runs.deleteRun(`${p}-5`);
      assert.is(store.runs.createRun(newRun()).run.name, `${p}-6`);
    },
    { random: () => 0 },
  )();
});

test('aggregateStatus: active wins with running first, then the worst final status', () => {
  assert.is(aggregateStatus(['submitted']), 'submitted');
  assert.is(aggregateStatus(['done', 'submitted']), 'submitted');
  assert.is(aggregateStatus(['submitted', 'provisioning']), 'provisioning');
  assert.is(aggregateStatus(['uploading', 'downloading']), 'uploading');
  assert.is(aggregateStatus(['uploading', 'running', 'submitted']), 'running');
  assert.is(aggregateStatus(['failed', 'running']), 'running');
  assert.is(aggregateStatus(['done', 'done']), 'done');
  assert.is(aggregateStatus(['done', 'interrupted']), 'interrupted');
  assert.is(aggregateStatus(['interrupted', 'stopped', 'done']), 'stopped');
  assert.is(aggregateStatus(['stopped', 'aborted']), 'aborted');
  assert.is(aggregateStatus(['aborted', 'failed', 'done']), 'failed');
  assert.is(aggregateStatus([]), 'submitted');
});

test(
  'setJobStatus records history, start and finish times, keeps final statuses, and updates the run',
  withStore((store, clock) => {
    const { run, jobs } = store.runs.createRun(newRun());
    const t0 = clock.t;
    const [a, b] = jobs.map((j) => j.id) as [ReturnType<typeof asJobId>, ReturnType<typeof asJobId>];
    clock.t = t0 + 10;
    assert.ok(store.runs.setJobStatus(a, 'provisioning'));
    assert.is(store.runs.getRun(run.name)?.status, 'provisioning');
    clock.t = t0 + 20;
    assert.ok(store.runs.setJobStatus(a, 'running'));
    clock.t = t0 + 25;
    assert.ok(store.runs.setJobStatus(a, 'running')); // same status: no new history entry
    assert.is(store.runs.getRun(run.name)?.status, 'running');
    clock.t = t0 + 30;
    assert.ok(store.runs.setJobStatus(a, 'done', { exitCode: 0 }));
    assert.is(store.runs.getRun(run.name)?.status, 'submitted');
    assert.is(store.runs.getRun(run.name)?.finishedAt, undefined);

    const ja = store.runs.getJob(a);
    assert.equal(ja?.history, [
      { status: 'submitted', at: t0 },
      { status: 'provisioning', at: t0 + 10 },
      { status: 'running', at: t0 + 20 },
      { status: 'done', at: t0 + 30 },
    ]);
    assert.is(ja?.startedAt, t0 + 20);
    assert.is(ja?.finishedAt, t0 + 30);
    assert.is(ja?.exitCode, 0);

    // Final is final.
    clock.t = t0 + 40;
    assert.is(store.runs.setJobStatus(a, 'failed', { exitCode: 1, reason: 'late' }), false);
    assert.is(store.runs.getJob(a)?.status, 'done');
    assert.is(store.runs.getJob(a)?.exitCode, 0);
    assert.is(store.runs.getJob(a)?.history.length, 4);
    assert.is(store.runs.setJobStatus(asJobId('nope-nope-1/x'), 'running'), false);

    assert.ok(store.runs.setJobStatus(b, 'running'));
    clock.t = t0 + 50;
    assert.ok(store.runs.setJobStatus(b, 'stopped', { exitCode: 143, reason: 'stopped by user' }));
    const rb = store.runs.getRun(run.name);
    assert.is(rb?.status, 'stopped');
    assert.is(rb?.finishedAt, t0 + 50);
    assert.is(store.runs.getJob(b)?.reason, 'stopped by user');
    assert.equal(
      store.runs.listRuns().map((r) => r.status),
      ['stopped'],
    );
  }),
);

test(
  'listRuns: newest first; without all, the newest `limit` plus every active run',
  withStore((store, clock) => {
    const names: string[] = [];
    for (let i = 0; i < 30; i++) {
      clock.t += 1000;
      const { run, jobs } = store.runs.createRun(newRun({ jobs: [{ spec: spec('w'), deps: [] }] }));
      names.push(run.name);
      // Runs 0 and 1 stay active; the rest finish.
      if (i > 1) store.runs.setJobStatus(jobs[0]!.id, 'done');
    }
    const newestFirst = [...names].reverse();
    assert.equal(store.runs.listRuns({ all: true }).map((r) => r.name), newestFirst);
    assert.equal(store.runs.listRuns({ all: true, limit: 5 }).map((r) => r.name), newestFirst.slice(0, 5));
    assert.equal(store.runs.listRuns().map((r) => r.name), [...newestFirst.slice(0, 20), names[1], names[0]]);
    assert.equal(store.runs.listRuns({ limit: 3 }).map((r) => r.name), [...newestFirst.slice(0, 3), names[1], names[0]]);
    // Same-millisecond runs still come newest first.
    const a = store.runs.createRun(newRun()).run.name;
    const b = store.runs.createRun(newRun()).run.name;
    assert.equal(store.runs.listRuns({ limit: 2 }).slice(0, 2).map((r) => r.name), [b, a]);
  }),
);

test(
  'appendLog numbers records per job; readLogs orders by time, job, seq and filters by since and after',
  withStore((store, clock) => {
    const { run, jobs } = store.runs.createRun(newRun());
    const [a, b] = jobs.map((j) => j.id) as [ReturnType<typeof asJobId>, ReturnType<typeof asJobId>];
    const t = clock.t;
    store.logs.appendLog(b, 'stdout', Buffer.from('b1'), t + 1);
    store.logs.appendLog(a, 'stdout', Buffer.from('a1'), t + 1);
    store.logs.appendLog(a, 'stderr', Buffer.from('a2'), t + 2);
    clock.t = t + 3;
    store.logs.appendLog(a, 'stdout', Buffer.from([0, 255, 10])); // binary, default time
    store.logs.appendLog(b, 'stdout', Buffer.from('b2'), t + 5);

    const all = [...store.logs.readLogs(run.name)];
    assert.equal(
      all.map((r) => [r.workflow, r.seq, r.at, r.stream, r.data.toString('latin1')]),
      [
        ['prepare', 1, t + 1, 'stdout', 'a1'],
        ['train', 1, t + 1, 'stdout', 'b1'],
        ['prepare', 2, t + 2, 'stderr', 'a2'],
        ['prepare', 3, t + 3, 'stdout', '\u0000\u00ff\n'],
        ['train', 2, t + 5, 'stdout', 'b2'],
      ],
    );
    assert.ok(Buffer.isBuffer(all[3]?.data));
    assert.is(all[0]?.job, a);
    assert.equal([...store.logs.readLogs(run.name, { sinceMs: t + 2 })].map((r) => r.data.toString()), ['a2', '\u0000\ufffd\n', 'b2']);
    assert.equal(
      [...store.logs.readLogs(run.name, { after: new Map([[a, 2]]) })].map((r) => r.data.toString()),
      ['b1', '\u0000\ufffd\n', 'b2'],
    );
    assert.equal(
      [...store.logs.readLogs(run.name, { after: new Map([[a, 3], [b, 1]]), sinceMs: t })].map((r) => r.data.toString()),
      ['b2'],
    );
    assert.equal([...store.logs.readLogs('nope-nope-1')], []);
  }),
);

test(
  'deleteRun removes the run with its jobs, history and logs, and nothing of other runs',
  withStore((store) => {
    const keep = store.runs.createRun(newRun());
    const gone = store.runs.createRun(newRun());
    for (const { jobs } of [keep, gone]) {
      store.runs.setJobStatus(jobs[0]!.id, 'running');
      store.logs.appendLog(jobs[0]!.id, 'stdout', Buffer.from('x'));
    }
    store.runs.deleteRun(gone.run.name);
    store.runs.deleteRun('nope-nope-1'); // unknown: no-op
    assert.is(store.runs.getRun(gone.run.name), undefined);
    assert.equal(store.runs.jobs(gone.run.name), []);
    assert.equal([...store.logs.readLogs(gone.run.name)], []);
    assert.is(store.runs.jobs(keep.run.name).length, 2);
    assert.is([...store.logs.readLogs(keep.run.name)].length, 1);
  }),
);

test('counts in the database after deleteRun: no orphans', () => {
  const home = tempHome();
  const store = openStore(home);
  const { run, jobs } = store.runs.createRun(newRun());
  store.runs.setJobStatus(jobs[1]!.id, 'running');
  store.logs.appendLog(jobs[1]!.id, 'stderr', Buffer.from('y'));
  store.runs.deleteRun(run.name);
  store.close();
  const db = new Database(join(home, 'store.db'), { readonly: true });
  try {
    for (const table of ['runs', 'jobs', 'job_status_history', 'logs'])
      assert.is(db.prepare(`SELECT count(*) FROM ${table}`).pluck().get(), 0, table);
    assert.is(db.prepare('SELECT count(*) FROM name_counters').pluck().get(), 1);
  } finally {
    db.close();
  }
});

test('a fresh home is 0700 and store.db 0600; reopening keeps the schema version and the data', () => {
  const home = tempHome();
  const s1 = openStore(home);
  const name = s1.runs.createRun(newRun()).run.name;
  s1.close();
  assert.is(statSync(home).mode & 0o777, 0o700);
  assert.is(statSync(join(home, 'store.db')).mode & 0o777, 0o600);

  const s2 = openStore(home);
  assert.is(s2.runs.getRun(name)?.name, name);
  s2.close();
  const s3 = openStore(home);
  s3.close();
  const db = new Database(join(home, 'store.db'), { readonly: true });
  try {
    assert.is(SCHEMA_VERSION, MIGRATIONS.length);
    assert.is(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    assert.is(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.is(db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'runs'").pluck().get(), 1);
  } finally {
    db.close();
  }
});

test('listRuns reads through an index', () => {
  const home = tempHome();
  openStore(home).close();
  const db = new Database(join(home, 'store.db'), { readonly: true });
  try {
    const plan = (sql: string) =>
      (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[]).map((r) => r.detail).join('; ');
    const newest = plan('SELECT * FROM runs ORDER BY submitted_at DESC, rowid DESC LIMIT 20');
    assert.match(newest, /USING INDEX runs_by_time/);
    assert.not.match(newest, /TEMP B-TREE/);
    const active = plan(
      "SELECT * FROM runs WHERE status IN ('submitted', 'provisioning', 'downloading', 'running', 'uploading') ORDER BY submitted_at DESC, rowid DESC",
    );
    assert.match(active, /USING INDEX runs_active/);
  } finally {
    db.close();
  }
});

test('a store from a newer dstack is a DS0300 naming the file; a file that is not a database a DS0322 naming it and the repair', () => {
  const home = tempHome();
  openStore(home).close();
  const db = new Database(join(home, 'store.db'));
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  try {
    openStore(home);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, DstackError);
    assert.is((e as DstackError).code, 'DS0300');
    assert.match((e as DstackError).message, join(home, 'store.db'));
    assert.match((e as DstackError).hint ?? '', /upgrade dstack/);
  }

  const bad = tempHome();
  openStore(bad).close();
  rmSync(join(bad, 'store.db'));
  rmSync(join(bad, 'store.db-wal'), { force: true });
  rmSync(join(bad, 'store.db-shm'), { force: true });
  // A file that is not SQLite at all.
  writeFileSync(join(bad, 'store.db'), 'this is not a database, just text that is long enough '.repeat(200));
  try {
    openStore(bad);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, DstackError);
    assert.is((e as DstackError).code, 'DS0322');
    assert.match((e as DstackError).message, /damaged/);
    assert.match((e as DstackError).message, join(bad, 'store.db'));
    assert.match((e as DstackError).hint ?? '', /dstack store verify/);
    assert.match((e as DstackError).hint ?? '', /move .*store\.db aside/);
  }
});

test.after(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

test.run();
