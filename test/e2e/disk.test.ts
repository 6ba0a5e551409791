/**
 * The machine under the dstack home, end to end on real file systems: a full disk (a 20 MB tmpfs
 * home) while saving a 50 MB artifact and while storing a flood of output; a home remounted
 * read-only; a store damaged in its pages or in one row. Each ends with a coded error and the
 * right exit status, never a trace, with nothing left running and the run recorded truthfully.
 */
import { closeSync, existsSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, runNameOf, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

async function mount(args: readonly string[]): Promise<void> {
  const r = await execa('mount', args, { reject: false });
  if (r.exitCode !== 0) throw new Error(`mount ${args.join(' ')}: ${r.stderr}`);
}

/** A project whose home is a tmpfs of `size` (created empty: what the harness wrote there is hidden). */
async function tmpfsProject(size: string, workflows: string, env: Record<string, string> = {}): Promise<Project> {
  const p = await createProject({ workflows: `workflows:\n${workflows}`, env });
  await mount(['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', p.home]);
  return p;
}

async function cleanup(p: Project): Promise<void> {
  await execa('umount', ['-l', p.home], { reject: false });
  await p.cleanup();
}

/** Nothing of the run is left behind: no container, no job folder. */
async function assertNothingLeft(p: Project): Promise<void> {
  assert.equal(await containersOf(p.home), [], 'no container is left');
  const jobs = join(p.home, 'jobs');
  assert.equal(existsSync(jobs) ? readdirSync(jobs) : [], [], 'no job folder is left');
}

/** Each `ps` of `listings` shows the run `name`, and its log (`hello from a`) reads back whole. */
async function assertReadable(p: Project, name: string, listings: readonly string[][]): Promise<void> {
  for (const args of listings) {
    const r = await p.run(args);
    assertNoCrash(r);
    assert.is(r.exitCode, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, name);
  }
  const logs = await p.run(['logs', name]);
  assert.is(logs.exitCode, 0, logs.stderr);
  assert.is(logs.stdout, 'hello from a\n');
}

async function assertFailedWithDiskFull(p: Project, stderr: string): Promise<void> {
  const name = runNameOf(stderr);
  const run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
  assert.is(run.status, 'failed', JSON.stringify(run));
  const job = run.jobs[0]!;
  assert.is(job.status, 'failed');
  assert.is(job.errorCode, 'DS0320');
  assert.match(job.reason ?? '', /^DS0320: /);
}

test(
  'a 50 MB artifact in a 20 MB home: DS0320, exit 3, the job and run failed with that reason, nothing left',
  withTimeout(90_000, async () => {
    // Sparse in the job's folder (it costs the tmpfs nothing there); its 50 MB are written when stored.
    const p = await tmpfsProject('20m', `  - name: big\n    image: ${IMAGE}\n    commands:\n      - mkdir -p out\n      - truncate -s 50M out/big\n      - echo made it\n    artifacts: [out]\n`);
    try {
      const r = await p.run(['run', 'big']);
      assertNoCrash(r);
      assert.is(r.exitCode, 3, r.stderr);
      assert.match(r.stderr, /error DS0320: no space left on the disk/);
      assert.match(r.stderr, /dstack prune/);
      await assertFailedWithDiskFull(p, r.stderr);
      await assertNothingLeft(p);
      const logs = await p.run(['logs', runNameOf(r.stderr)]);
      assert.is(logs.exitCode, 0, logs.stderr);
      assert.is(logs.stdout, 'made it\n');
    } finally {
      await cleanup(p);
    }
  }),
);

test(
  'output that fills a 20 MB home (no log limit): the store is full, DS0320, exit 3, the job killed and failed, nothing left',
  withTimeout(120_000, async () => {
    const p = await tmpfsProject(
      '20m',
      // Then it would sleep past the test's timeout: it ends in time only if dstack kills it.
      `  - name: chatty\n    image: ${IMAGE}\n    commands:\n      - yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 40000000\n      - sleep 600\n`,
      { DSTACK_LOG_LIMIT: 'unlimited' },
    );
    try {
      const r = await p.run(['run', 'chatty'], { timeoutMs: 100_000 });
      assertNoCrash(r);
      assert.is(r.exitCode, 3, r.stderr.slice(-2000));
      assert.match(r.stderr, /error DS0320: the disk holding the run store is full: .*store\.db/);
      await assertFailedWithDiskFull(p, r.stderr);
      await assertNothingLeft(p);
      // The disk is still full of the run's logs: prune must still be able to delete it (the home's
      // reserve pays for that write) and give the space back.
      const prune = await p.run(['prune', '--older-than', '0s', '-y']);
      assertNoCrash(prune);
      assert.is(prune.exitCode, 0, prune.stderr);
      assert.match(prune.stderr, /The run store shrank from \d+(\.\d)? MB to \d+ kB/);
      assert.ok(statSync(join(p.home, 'store.db')).size < 1e6);
    } finally {
      await cleanup(p);
    }
  }),
);

test(
  'a read-only home: ps, logs, ls, cp and tags list still work; run says the home is read-only (exit 3)',
  withTimeout(90_000, async () => {
    const p = await tmpfsProject('64m', `  - name: a\n    image: ${IMAGE}\n    commands:\n      - echo hello from a\n      - mkdir -p out && echo content > out/x.txt\n    artifacts: [out]\n`);
    try {
      const first = await p.run(['run', 'a']);
      assert.is(first.exitCode, 0, first.stderr);
      const name = runNameOf(first.stderr);
      await mount(['-o', 'remount,ro', p.home]);

      await assertReadable(p, name, [['ps'], ['ps', '-a', '-A'], ['ps', name]]);
      const ls = await p.run(['ls', name]);
      assert.is(ls.exitCode, 0, ls.stderr);
      assert.match(ls.stdout, 'out/x.txt');
      const cp = await p.run(['cp', name, 'out/x.txt', join(p.dir, 'copied.txt')]);
      assert.is(cp.exitCode, 0, cp.stderr);
      assert.is(statSync(join(p.dir, 'copied.txt')).size, 'content\n'.length);
      const tags = await p.run(['tags', 'list']);
      assert.is(tags.exitCode, 0, tags.stderr);

      const run = await p.run(['run', 'a']);
      assertNoCrash(run);
      assert.is(run.exitCode, 3, run.stderr);
      assert.match(run.stderr, /error DS0321: the dstack home .* cannot be written \(EROFS\)/);
    } finally {
      await cleanup(p);
    }
  }),
);

test(
  'a home whose disk is full to the last byte (the reserve gone too): ps and logs read what is there; run says DS0320 (exit 3)',
  withTimeout(90_000, async () => {
    const p = await tmpfsProject('24m', `  - name: a\n    image: ${IMAGE}\n    commands:\n      - echo hello from a\n`);
    try {
      const first = await p.run(['run', 'a']);
      assert.is(first.exitCode, 0, first.stderr);
      const name = runNameOf(first.stderr);
      // Not one byte left: no room for the store's shared-memory file or its WAL.
      rmSync(join(p.home, 'store.reserve'), { force: true });
      fill(join(p.home, 'filler'));

      await assertReadable(p, name, [['ps'], ['ps', name, '--json']]);
      const run = await p.run(['run', 'a']);
      assertNoCrash(run);
      assert.is(run.exitCode, 3, run.stderr);
      assert.match(run.stderr, /error DS0320: .*full/);
    } finally {
      await cleanup(p);
    }
  }),
);

/** Writes `path` until the disk under it has no byte left. */
function fill(path: string): void {
  const fd = openSync(path, 'w');
  try {
    for (const size of [1 << 20, 4096, 1]) {
      const chunk = Buffer.alloc(size);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      }
    }
  } finally {
    closeSync(fd);
  }
}

async function homeWithRun(): Promise<{ p: Project; name: string }> {
  const p = await createProject({ workflows: `workflows:\n  - name: a\n    image: ${IMAGE}\n    commands: [echo hi]\n` });
  const r = await p.run(['run', 'a']);
  assert.is(r.exitCode, 0, r.stderr);
  return { p, name: runNameOf(r.stderr) };
}

test(
  'a store damaged in its pages: DS0322 naming the file and `dstack store verify`, exit 3, for every command that reads it',
  withTimeout(60_000, async () => {
    const { p, name } = await homeWithRun();
    try {
      const path = join(p.home, 'store.db');
      const size = statSync(path).size;
      const fd = openSync(path, 'r+');
      writeSync(fd, Buffer.alloc(size - 4096, 0x5a), 0, size - 4096, 4096);
      closeSync(fd);
      for (const args of [['ps'], ['logs', name], ['run', 'a']]) {
        const r = await p.run(args);
        assertNoCrash(r);
        assert.is(r.exitCode, 3, `${args.join(' ')}: ${r.stderr}`);
        assert.ok(r.stderr.startsWith(`error DS0322: the run store is damaged: ${path}\n`), r.stderr);
        assert.match(r.stderr, /`dstack store verify` checks it and names what is damaged/);
      }
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'one damaged row: DS0323 naming the record, the file and the repair, exit 3, never exit 70',
  withTimeout(60_000, async () => {
    const { p, name } = await homeWithRun();
    try {
      const db = new Database(join(p.home, 'store.db'));
      db.prepare('UPDATE runs SET repo = ? WHERE name = ?').run('{"root": ', name);
      db.prepare('UPDATE jobs SET manifest = ? WHERE run = ?').run('[[[', name);
      db.close();
      for (const args of [['ps'], ['ps', name], ['logs', name], ['ls', name]]) {
        const r = await p.run(args);
        assertNoCrash(r);
        assert.is(r.exitCode, 3, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`^error DS0323: the run store holds a damaged record \\(run ${name} repo\\): ${join(p.home, 'store.db')}\\n`));
        assert.match(r.stderr, /dstack store verify/);
      }
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
