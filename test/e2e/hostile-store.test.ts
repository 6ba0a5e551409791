/**
 * A damaged store, end to end on real Docker (issue 7 §2): an object truncated, with a byte flipped
 * (mtime put back), or deleted, met by `cp` and by deps staging into a dependent job; `dstack store
 * verify` over objects and the database. After each: a coded error and exit 3, no wrong bytes served
 * with exit 0 (no destination written, the dependent never started), the next run re-runs the
 * producer and gets the right bytes, no stack trace.
 */
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, truncateSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, runNameOf, type CliResult, type Project } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const SIZE = 100_000;
/** What `a` writes: 100 kB of `x`. */
const CONTENT = Buffer.alloc(SIZE, 'x');
const HASH = createHash('sha256').update(CONTENT).digest('hex');

const WORKFLOWS = `workflows:
  - name: a
    image: ${IMAGE}
    commands:
      - mkdir -p out
      - head -c ${SIZE} /dev/zero | tr '\\0' x > out/x.bin
      - echo made-by-a
    artifacts: [out]
  - name: b
    image: ${IMAGE}
    deps: [a]
    commands:
      - echo b-started
      - sha256sum out/x.bin
`;

const objectOf = (p: Project): string => join(p.home, 'objects', 'sha256', HASH.slice(0, 2), HASH);

type Damage = (path: string) => void;
const damages: Record<string, Damage> = {
  truncated: (path) => {
    chmodSync(path, 0o644);
    truncateSync(path, 5_000);
  },
  'a byte flipped, mtime put back': (path) => {
    const st = statSync(path);
    chmodSync(path, 0o644);
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.from('y'), 0, 1, SIZE - 10);
    closeSync(fd);
    chmodSync(path, 0o444);
    utimesSync(path, st.atime, st.mtime);
  },
  deleted: (path) => unlinkSync(path),
};
const codeOf = (kind: string): string => (kind === 'deleted' ? 'DS0303' : 'DS0304');

const clean = async (p: Project, r: CliResult): Promise<void> => {
  assertNoCrash(r);
  assert.equal(await containersOf(p.home), []);
  assert.equal(readdirSync(join(p.home, 'jobs')).filter((d) => !d.startsWith('.')), []);
};

/** Runs b; asserts a ran (not reused) and b read exactly a's bytes. */
async function rerunsProducer(p: Project): Promise<string> {
  const r = await p.run(['run', 'b']);
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stderr, /\n {2}a: running\n/, 'the producer must run again, not be reused');
  assert.ok(r.stdout.includes(`b | ${HASH}  out/x.bin\n`), r.stdout);
  await clean(p, r);
  return runNameOf(r.stderr);
}

let p: Project;
test.before(async () => {
  p = await createProject({ workflows: WORKFLOWS });
});
test.after(async () => {
  await p.cleanup();
});

for (const [kind, damage] of Object.entries(damages)) {
  test(
    `cp of an object ${kind}: exit 3 with ${codeOf(kind)}, no destination, existing one untouched; the next run re-runs the producer`,
    withTimeout(90_000, async () => {
      const made = await p.run(['run', 'b']);
      assert.is(made.exitCode, 0, made.stderr);
      const run = runNameOf(made.stderr);
      damage(objectOf(p));
      const dst = join(p.dir, `copy-${kind.replace(/\W+/g, '-')}`);
      const cp = await p.run(['cp', run, 'out/x.bin', dst]);
      assert.is(cp.exitCode, 3, cp.stderr);
      assert.is(cp.stdout, '');
      const why = kind === 'deleted' ? 'is missing from the store' : kind === 'truncated' ? 'is damaged (it holds 5000 bytes, not 100000)' : 'is damaged (its bytes hash to';
      assert.ok(cp.stderr.startsWith(`error ${codeOf(kind)}: stored object ${HASH} ${why}`), cp.stderr);
      assert.ok(cp.stderr.endsWith('  = the job that made it will run again next time; `dstack store verify` checks the whole store\n'), cp.stderr);
      assertNoCrash(cp);
      assert.not.ok(existsSync(dst), 'a partial destination was left');
      // Into an existing folder: what was there stays exactly as it was.
      writeFileSync(join(p.dir, 'keep.txt'), 'mine');
      const before = readdirSync(p.dir).sort();
      const into = await p.run(['cp', run, 'out', p.dir]);
      assert.is(into.exitCode, 3, into.stderr);
      assert.equal(readdirSync(p.dir).sort(), before);
      await rerunsProducer(p);
      // Repaired: the object is back, with the right bytes.
      assert.ok(readFileSync(objectOf(p)).equals(CONTENT));
    }),
  );
}

for (const [kind, damage] of Object.entries(damages)) {
  test(
    `deps staging of an object ${kind}: the dependent never starts, exit 3 with ${codeOf(kind)}; the next run re-runs the producer`,
    withTimeout(90_000, async () => {
      await p.run(['run', 'b']);
      damage(objectOf(p));
      const r = await p.run(['run', 'b']);
      assert.is(r.exitCode, 3, r.stderr);
      assert.match(r.stderr, /\n {2}a: cached \(same inputs as [\w-]+\/a\)\n/);
      assert.match(r.stderr, new RegExp(`\\n {2}b: failed — ${codeOf(kind)}: stored object ${HASH} `));
      assert.not.ok(r.stdout.includes('b-started'), 'b ran on wrong bytes');
      assert.is(r.stdout, '');
      await clean(p, r);
      await rerunsProducer(p);
    }),
  );
}

test(
  'store verify: finds a flipped and a truncated object and a missing one, quarantines, says so (--json too), exit 3; then all sound once re-made',
  withTimeout(120_000, async () => {
    const q = await createProject({
      workflows: `${WORKFLOWS}  - name: c
    image: ${IMAGE}
    commands: [mkdir -p c, echo ccc > c/c.txt, echo dd > c/d.txt]
    artifacts: [c]
`,
    });
    try {
      for (const wf of ['b', 'c']) assert.is((await q.run(['run', wf])).exitCode, 0);
      const sound = await q.run(['store', 'verify']);
      assert.is(sound.exitCode, 0, sound.stderr);
      assert.match(sound.stderr, /^Checked \d+ objects \([\d.]+ kB\) and store\.db: all sound\n$/);
      const hashOf = (s: string): string => createHash('sha256').update(s).digest('hex');
      const [c, d] = [hashOf('ccc\n'), hashOf('dd\n')];
      const obj = (h: string): string => join(q.home, 'objects', 'sha256', h.slice(0, 2), h);
      damages['a byte flipped, mtime put back']!(objectOf(q));
      damages.truncated!(obj(c));
      damages.deleted!(obj(d));
      const r = await q.run(['store', 'verify', '--json']);
      assert.is(r.exitCode, 3, r.stderr);
      assertNoCrash(r);
      const report = JSON.parse(r.stdout) as { damaged: { hash: string; quarantinedAs: string }[]; missing: string[]; database: { problems: string[] } };
      assert.equal(report.damaged.map((x) => x.hash), [HASH, c].sort());
      for (const x of report.damaged) assert.match(x.quarantinedAs, new RegExp(`^objects/quarantine/${x.hash}-\\d+-[0-9a-f]{6}$`));
      assert.equal(report.missing, [d]);
      assert.equal(report.database.problems, []);
      assert.match(r.stderr, /^error DS0306: Checked \d+ objects \([\d.]+ (k?B)\) and store\.db: found 2 damaged objects \(quarantined\), 1 missing object\n {2}= the jobs that made them will run again next time; tags that hold them need their runs again\n$/);
      // Plain text, once more: the quarantined ones are missing now.
      const again = await q.run(['store', 'verify']);
      assert.is(again.exitCode, 3);
      assert.equal(again.stdout.split('\n').filter(Boolean).sort(), [`missing ${HASH}`, `missing ${c}`, `missing ${d}`].sort());
      // The runs re-make what they made.
      for (const wf of ['b', 'c']) {
        const rr = await q.run(['run', wf]);
        assert.is(rr.exitCode, 0, rr.stderr);
        assert.not.match(rr.stderr, /cached/);
      }
      const fixed = await q.run(['store', 'verify']);
      assert.is(fixed.exitCode, 0, fixed.stderr);
    } finally {
      await q.cleanup();
    }
  }),
);

test(
  'store verify: a damaged database is named, with what SQLite says, exit 3; the objects are checked all the same',
  withTimeout(60_000, async () => {
    const q = await createProject({ workflows: WORKFLOWS });
    try {
      assert.is((await q.run(['run', 'a'])).exitCode, 0);
      const db = join(q.home, 'store.db');
      const fd = openSync(db, 'r+');
      writeSync(fd, Buffer.from('this is not the sqlite header'), 0, 29, 0);
      closeSync(fd);
      const r = await q.run(['store', 'verify']);
      assert.is(r.exitCode, 3, r.stderr);
      assertNoCrash(r);
      assert.match(r.stdout, /^database SQLITE_NOTADB: file is not a database\n$/);
      assert.match(r.stderr, new RegExp(`^error DS0306: Checked \\d+ objects \\([\\d.]+ k?B\\) and store\\.db: found a damaged database \\(1 problem\\)\\n {2}= move ${db.replace(/[.]/g, '\\.')} aside`));
    } finally {
      await q.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
