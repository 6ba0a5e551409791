import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseRunName } from '../../src/engine/store/names.js';
import { withTimeout } from '../helpers/timeout.js';

const root = new URL('../..', import.meta.url).pathname;
const worker = join(root, 'test/helpers/store-worker.ts');

function runWorker(home: string, count: number, startAt: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', worker, home, String(count), String(startAt)], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(out) as string[]);
      else reject(new Error(`worker exited with ${code}:\n${err}`));
    });
  });
}

test(
  'four processes creating 25 runs each on one fresh home get 100 distinct names and consistent counters',
  withTimeout(60_000, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dstack-store-conc-'));
    try {
      const home = join(dir, 'home'); // does not exist yet: the workers race to create and migrate it
      const startAt = Date.now() + 1500; // past tsx start-up, so the workers really start together
      const results = await Promise.all([0, 1, 2, 3].map(() => runWorker(home, 25, startAt)));
      const names = results.flat();
      assert.is(names.length, 100);
      assert.is(new Set(names).size, 100);

      const db = new Database(join(home, 'store.db'), { readonly: true });
      try {
        assert.is(db.pragma('integrity_check', { simple: true }), 'ok');
        assert.equal(db.pragma('foreign_key_check'), []);
        assert.is(db.prepare('SELECT count(*) FROM runs').pluck().get(), 100);
        assert.is(db.prepare('SELECT count(*) FROM jobs').pluck().get(), 100);
        const counters = db.prepare('SELECT prefix, next FROM name_counters').all() as { prefix: string; next: number }[];
        assert.ok(counters.length >= 1 && counters.length <= 4, `${counters.length} prefixes`);
        // Each prefix's numbers are exactly 1..next-1: no gap, no duplicate, none beyond the counter.
        const byPrefix = new Map<string, number[]>();
        for (const n of names) {
          const p = parseRunName(n);
          assert.ok(p, n);
          byPrefix.set(p.prefix, [...(byPrefix.get(p.prefix) ?? []), p.n]);
        }
        assert.is(byPrefix.size, counters.length);
        for (const { prefix, next } of counters) {
          const ns = (byPrefix.get(prefix) ?? []).sort((a, b) => a - b);
          assert.equal(ns, Array.from({ length: next - 1 }, (_, i) => i + 1), prefix);
        }
      } finally {
        db.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test.run();
