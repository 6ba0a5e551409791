/** A damaged row or file is a coded error naming the store and the repair, never a crash (exit 70). */
import { mkdtempSync, openSync, rmSync, writeSync, closeSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { Fingerprint } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';

const dirs: string[] = [];
function homeWithRun(): { home: string; run: string; job: string } {
  const d = mkdtempSync(join(tmpdir(), 'dstack-damage-'));
  dirs.push(d);
  const home = join(d, 'home');
  const store = openStore(home);
  const { run: record, jobs } = store.runs.createRun({
    workflow: 'a',
    owner: 'o',
    backend: 'local',
    repo: { root: '/p', isGit: false },
    args: [],
    jobs: [{ spec: jobSpec({ workflow: 'a' }), deps: [] }],
  });
  const run = record.name;
  const job = jobs[0]!.id;
  store.cache.setJobFingerprint(job, 'f'.repeat(64) as Fingerprint, { version: 1, parts: { image: 'x' } });
  store.runs.setJobManifest(job, { version: 1, entries: [], size: 0 });
  store.runs.setJobStatus(job, 'done');
  store.tags.putTag({ name: 't', run, manifest: { version: 1, entries: [], size: 0 }, createdAt: 1 });
  store.close();
  return { home, run, job };
}

function damage(home: string, sql: string): void {
  const db = new Database(join(home, 'store.db'));
  db.exec(sql);
  db.close();
}

function assertDamaged(fn: () => unknown, home: string, what: RegExp): void {
  try {
    fn();
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, DstackError);
    const err = e as DstackError;
    assert.is(err.code, 'DS0323', err.message);
    assert.is(err.exitCode, 3);
    assert.match(err.message, join(home, 'store.db'));
    assert.match(err.message, what);
    assert.match(err.hint ?? '', /dstack store verify/);
  }
}

test('each JSON column that does not parse, or is not the shape it must be, is DS0323 naming the record', () => {
  const cases: [string, (s: ReturnType<typeof openStore>, r: { run: string; job: string }) => unknown, RegExp][] = [
    ["UPDATE runs SET repo = '{not json'", (s, r) => s.runs.getRun(r.run), /run .* repo/],
    ["UPDATE runs SET args = '{\"a\":1}'", (s) => s.runs.listRuns({ all: true }), /run .* args/],
    ["UPDATE runs SET status = 'exploded'", (s, r) => s.runs.getRun(r.run), /run .* status/],
    ["UPDATE jobs SET spec = 'null'", (s, r) => s.runs.jobs(r.run), /job .* spec/],
    ["UPDATE jobs SET manifest = '[1,2'", (s) => s.cache.findCacheHit('f'.repeat(64) as Fingerprint), /job .* manifest/],
    ["UPDATE jobs SET fingerprint_parts = '7'", (s) => s.cache.lastFingerprintedJob('a', '/p'), /job .* fingerprint/],
    ["UPDATE jobs SET handle = 'x'", (s, r) => s.runs.getJob(r.job as never), /job .* handle/],
    ["UPDATE tags SET manifest = '{}'", (s) => s.tags.listTags(), /tag t manifest/],
    ["UPDATE jobs SET manifest = '{\"entries\": 3}'", (s) => s.prune.referencedObjects(), /manifest/],
  ];
  for (const [sql, read, what] of cases) {
    const { home, run, job } = homeWithRun();
    damage(home, sql);
    const store = openStore(home);
    try {
      assertDamaged(() => read(store, { run, job }), home, what);
    } finally {
      store.close();
    }
  }
});

test('a file damaged in its pages is DS0322 when read, naming the file and the repair', () => {
  const { home, run } = homeWithRun();
  const path = join(home, 'store.db');
  const size = statSync(path).size;
  assert.ok(size >= 4096 * 4, `size ${size}`);
  // Overwrite every page but the header page with garbage: the header opens, the tables do not.
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(size - 4096, 0xa5), 0, size - 4096, 4096);
  closeSync(fd);
  try {
    const store = openStore(home);
    try {
      store.runs.listRuns({ all: true });
      store.runs.jobs(run);
    } finally {
      store.close();
    }
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, DstackError);
    const err = e as DstackError;
    assert.is(err.code, 'DS0322', err.message);
    assert.is(err.exitCode, 3);
    assert.match(err.message, path);
    assert.match(err.hint ?? '', /dstack store verify/);
  }
});

test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test.run();
