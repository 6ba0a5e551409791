import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { takeSnapshot } from '../../src/engine/snapshot.js';
import type { Snapshot } from '../../src/engine/snapshot-types.js';
import { withTimeout } from '../helpers/timeout.js';

// Keep git from finding a repository above the temp folders, whatever the machine has.
process.env.GIT_CEILING_DIRECTORIES = realpathSync(tmpdir());

function git(cwd: string, ...args: string[]): string {
  return execFileSync(
    'git',
    ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'commit.gpgsign=false', '-c', 'core.hooksPath=/dev/null', ...args],
    { cwd, encoding: 'utf8', env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' } },
  ).trim();
}

function write(root: string, rel: string, content: string, mode?: number): void {
  const p = join(root, rel);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, content);
  if (mode !== undefined) chmodSync(p, mode);
}

function tmp(): string {
  return realpathSync(mkdtempSync(join(tmpdir(), 'dstack-snap-')));
}

const paths = (s: Snapshot): string[] => s.files.map((f) => f.path);
const file = (s: Snapshot, p: string) => s.files.find((f) => f.path === p);

/** A repo with one of everything: tracked, exec, symlink, ignored by git, ignored by dstack, deleted. */
function makeRepo(dir: string): void {
  git(dir, 'init', '-q', '-b', 'main');
  write(dir, 'a.txt', 'alpha\n');
  write(dir, 'run.sh', '#!/bin/sh\necho hi\n', 0o755);
  write(dir, 'sub/b.txt', 'beta\n');
  write(dir, 'gone.txt', 'soon deleted\n');
  write(dir, '.gitignore', '*.log\nbuild/\n');
  write(dir, '.dstackignore', 'data/\n*.tmp\n');
  symlinkSync('a.txt', join(dir, 'link'));
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'init');
}

test(
  'git repo: tracked and untracked files, minus ignored and deleted ones',
  withTimeout(20_000, async () => {
    const dir = tmp();
    try {
      makeRepo(dir);
      unlinkSync(join(dir, 'gone.txt'));
      write(dir, 'new.txt', 'untracked\n');
      write(dir, 'x.log', 'git-ignored\n');
      write(dir, 'build/out.o', 'git-ignored\n');
      write(dir, 'data/big.bin', 'dstack-ignored\n');
      write(dir, 'scratch.tmp', 'dstack-ignored\n');
      const s = await takeSnapshot(dir);
      assert.equal(paths(s), ['.dstackignore', '.gitignore', 'a.txt', 'link', 'new.txt', 'run.sh', 'sub/b.txt']);
      assert.is(s.root, dir);
      assert.equal(file(s, 'a.txt'), { path: 'a.txt', size: 6, mode: 0o644 });
      assert.is(file(s, 'run.sh')?.mode, 0o755);
      assert.is(file(s, 'link')?.link, 'a.txt');
      assert.is(s.repo.isGit, true);
      assert.is(s.repo.branch, 'main');
      assert.is(s.repo.commit, git(dir, 'rev-parse', 'HEAD'));
      assert.ok(s.repo.diffHash && /^[0-9a-f]{64}$/.test(s.repo.diffHash));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test(
  'diffHash: undefined when clean, changes with the content of tracked and untracked files',
  withTimeout(20_000, async () => {
    const dir = tmp();
    try {
      makeRepo(dir);
      const clean = await takeSnapshot(dir);
      assert.is(clean.repo.diffHash, undefined);
      // Ignored untracked files do not make the tree dirty.
      write(dir, 'x.log', 'ignored');
      write(dir, 'data/d.bin', 'ignored');
      assert.is((await takeSnapshot(dir)).repo.diffHash, undefined);

      write(dir, 'a.txt', 'changed once\n');
      const h1 = (await takeSnapshot(dir)).repo.diffHash;
      write(dir, 'a.txt', 'changed twice\n');
      const h2 = (await takeSnapshot(dir)).repo.diffHash;
      assert.ok(h1 && h2);
      assert.is.not(h1, h2);
      assert.is((await takeSnapshot(dir)).repo.diffHash, h2, 'same tree, same hash');

      write(dir, 'a.txt', 'alpha\n');
      assert.is((await takeSnapshot(dir)).repo.diffHash, undefined, 'back to clean');

      write(dir, 'u.txt', 'one');
      const u1 = (await takeSnapshot(dir)).repo.diffHash;
      write(dir, 'u.txt', 'two');
      const u2 = (await takeSnapshot(dir)).repo.diffHash;
      assert.ok(u1 && u2);
      assert.is.not(u1, u2, 'untracked content counts');

      // Staged-only changes count too.
      rmSync(join(dir, 'u.txt'));
      write(dir, 'a.txt', 'staged\n');
      git(dir, 'add', 'a.txt');
      assert.ok((await takeSnapshot(dir)).repo.diffHash);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test(
  'root in a subfolder of the repo: only its files, relative to it, nested .dstackignore applies',
  withTimeout(20_000, async () => {
    const dir = tmp();
    try {
      makeRepo(dir);
      write(dir, 'proj/.dstack/workflows.yaml', 'workflows: []\n');
      write(dir, 'proj/train.py', 'print(1)\n');
      write(dir, 'proj/deep/.dstackignore', 'secret.txt\n');
      write(dir, 'proj/deep/secret.txt', 'no\n');
      write(dir, 'proj/deep/ok.txt', 'yes\n');
      git(dir, 'add', '-A');
      git(dir, 'commit', '-q', '-m', 'proj');
      write(dir, 'proj/untracked.py', 'x\n');
      write(dir, 'outside.txt', 'not under root\n');
      const s = await takeSnapshot(join(dir, 'proj'));
      assert.equal(paths(s), ['.dstack/workflows.yaml', 'deep/.dstackignore', 'deep/ok.txt', 'train.py', 'untracked.py']);
      assert.is(s.root, join(dir, 'proj'));
      assert.is(s.repo.branch, 'main');
      assert.ok(s.repo.diffHash);

      // A change outside the root does not count as a change of this snapshot's code.
      rmSync(join(dir, 'proj/untracked.py'));
      assert.is((await takeSnapshot(join(dir, 'proj'))).repo.diffHash, undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test(
  'a repo with no commits: no commit, files staged and untracked, a diff hash',
  withTimeout(20_000, async () => {
    const dir = tmp();
    try {
      git(dir, 'init', '-q', '-b', 'main');
      write(dir, 'staged.txt', 's\n');
      git(dir, 'add', 'staged.txt');
      write(dir, 'loose.txt', 'l\n');
      const s = await takeSnapshot(dir);
      assert.equal(paths(s), ['loose.txt', 'staged.txt']);
      assert.is(s.repo.isGit, true);
      assert.is(s.repo.commit, undefined);
      assert.is(s.repo.branch, 'main');
      assert.ok(s.repo.diffHash);
      write(dir, 'staged.txt', 'changed\n');
      assert.is.not((await takeSnapshot(dir)).repo.diffHash, s.repo.diffHash);

      const empty = tmp();
      try {
        git(empty, 'init', '-q', '-b', 'main');
        const e = await takeSnapshot(empty);
        assert.equal(e.files, []);
        assert.is(e.repo.diffHash, undefined);
      } finally {
        rmSync(empty, { recursive: true, force: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test(
  'detached HEAD: no branch, the commit',
  withTimeout(20_000, async () => {
    const dir = tmp();
    try {
      makeRepo(dir);
      const head = git(dir, 'rev-parse', 'HEAD');
      git(dir, 'checkout', '-q', '--detach', 'HEAD');
      const s = await takeSnapshot(dir);
      assert.is(s.repo.branch, undefined);
      assert.is(s.repo.commit, head);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test(
  'not a git repo: every file but .git/ and .dstackignore matches',
  withTimeout(20_000, async () => {
    const dir = tmp();
    try {
      write(dir, 'a.txt', 'a');
      write(dir, 'bin/tool', '#!/bin/sh\n', 0o700);
      write(dir, '.dstackignore', 'cache/\n*.pyc\n');
      write(dir, 'cache/x', 'no');
      write(dir, 'm.pyc', 'no');
      write(dir, 'sub/.dstackignore', 'local.txt\n');
      write(dir, 'sub/local.txt', 'no');
      write(dir, 'sub/kept.txt', 'yes');
      write(dir, 'sub/.git', 'gitdir: nowhere\n'); // a file, not a folder: kept
      mkdirSync(join(dir, 'empty'));
      symlinkSync('/etc/hostname', join(dir, 'abs-link'));
      const s = await takeSnapshot(dir);
      assert.equal(paths(s), ['.dstackignore', 'a.txt', 'abs-link', 'bin/tool', 'sub/.dstackignore', 'sub/.git', 'sub/kept.txt']);
      assert.is(s.repo.isGit, false);
      assert.is(s.repo.branch, undefined);
      assert.is(s.repo.diffHash, undefined);
      assert.is(file(s, 'bin/tool')?.mode, 0o755);
      assert.is(file(s, 'abs-link')?.link, '/etc/hostname');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test(
  'not a git repo: a .git folder at the root is skipped',
  withTimeout(20_000, async () => {
    const dir = tmp();
    try {
      // A .git folder git does not accept as a repository: git finds nothing, the walk must skip it.
      write(dir, '.git/junk', 'x');
      write(dir, 'a.txt', 'a');
      const s = await takeSnapshot(dir);
      assert.equal(paths(s), ['a.txt']);
      assert.is(s.repo.isGit, false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test.run();
