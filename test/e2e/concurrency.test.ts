/**
 * Several `dstack run` processes at once against one dstack home: the store stays intact, run names
 * stay unique, every job reaches a final status, and the content-addressed store holds each object
 * exactly once under its name with no half-written leftovers.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const WORKFLOWS = `workflows:
  - name: gen
    image: ${IMAGE}
    commands:
      - mkdir -p out
      - echo shared-content > out/same.txt
      - echo "\${{ run.name }}" > out/own.txt
    artifacts:
      - path: ./out
`;

test(
  'four concurrent runs in one home: unique names, all done, store intact, objects stored once',
  withTimeout(120_000, async () => {
    const p = await createProject({ workflows: WORKFLOWS, files: { 'data/input.txt': 'x'.repeat(10_000) } });
    try {
      const results = await Promise.all([0, 1, 2, 3].map(() => p.run(['run', 'gen', '--json'], { timeoutMs: 90_000 })));
      for (const r of results) {
        assertNoCrash(r);
        assert.is(r.exitCode, 0, r.stderr);
      }
      const runs = await p.json<{ run: string; status: string }[]>(['ps', '-a', '--json']);
      assert.is(runs.length, 4);
      assert.is(new Set(runs.map((r) => r.run)).size, 4, 'run names are unique');
      assert.ok(runs.every((r) => r.status === 'done'), JSON.stringify(runs));

      const db = new Database(join(p.home, 'store.db'), { readonly: true });
      try {
        assert.is(db.pragma('integrity_check', { simple: true }), 'ok');
        assert.equal(db.pragma('foreign_key_check'), []);
      } finally {
        db.close();
      }

      // Every object sits under the name of its own content, exactly once; no temp file is left.
      const root = join(p.home, 'objects', 'sha256');
      const names: string[] = [];
      for (const shard of readdirSync(root)) {
        for (const name of readdirSync(join(root, shard))) {
          const body = readFileSync(join(root, shard, name));
          assert.is(createHash('sha256').update(body).digest('hex'), name, `object ${name} holds its own content`);
          assert.is(statSync(join(root, shard, name)).mode & 0o777, 0o444);
          names.push(name);
        }
      }
      assert.is(new Set(names).size, names.length);
      const shared = createHash('sha256').update('shared-content\n').digest('hex');
      assert.ok(names.includes(shared), 'the identical artifact is in the store');
      const tmp = join(p.home, 'objects', 'tmp');
      assert.equal(readdirSync(tmp).length, 0, 'no temp files are left behind');

      // Each run's own artifact is its own; the identical one is one object shared by all four.
      for (const r of runs) {
        const ls = await p.json<{ entries: { path: string; hash: string }[] }>(['ls', r.run, '--json']);
        const own = ls.entries.find((e) => e.path === 'out/own.txt');
        const same = ls.entries.find((e) => e.path === 'out/same.txt');
        assert.is(own?.hash, createHash('sha256').update(`${r.run}\n`).digest('hex'));
        assert.is(same?.hash, shared);
      }
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container is left behind', withTimeout(30_000, () => assertNoContainersLeft('for')));

test.run();
