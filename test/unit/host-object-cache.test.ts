/**
 * The host object cache's scripts (src/backends/ssh-host/object-cache.ts), run by a local `sh` in
 * place of an SSH session (a stub connection: the scripts, coreutils and the filesystem are real),
 * with `sha256sum` wrapped to log what it hashes: an object proved sound once is not hashed again
 * while only dstack touches it (marking use, hard-linking, removing the job folder); a write to it,
 * mtime put back, is caught; a truncated one is refused without hashing; uploads are hashed before
 * they take their name.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { SshConnection } from '../../src/backends/ssh-host/connect.js';
import { hostLayout, type HostLayout } from '../../src/backends/ssh-host/host-layout.js';
import { acceptUploads, checkOnHost, removeJobDirOnHost } from '../../src/backends/ssh-host/object-cache.js';
import { materializeOnHost, stagePlan } from '../../src/backends/ssh-host/transfer.js';
import { emptyManifest } from '../../src/artifacts/types.js';
import { asContentHash } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

interface Host {
  readonly base: string;
  readonly layout: HostLayout;
  readonly connection: SshConnection;
  /** Hashes sha256sum was asked for since the last call. */
  hashed(): string[];
  put(content: string): string;
}

/** A "host" whose home is a temp folder; commands run by the local sh with a logging sha256sum first in PATH. */
function host(): Host {
  const base = realpathSync(mkdtempSync(join(tmpdir(), 'dstack-hostcache-')));
  const bin = join(base, 'bin');
  mkdirSync(bin);
  const log = join(base, 'hashed.log');
  writeFileSync(join(bin, 'sha256sum'), `#!/bin/sh\nfor a in "$@"; do case $a in --) ;; *) echo "$a" >> ${log} ;; esac; done\nexec /usr/bin/sha256sum "$@"\n`, { mode: 0o755 });
  const layout = hostLayout(join(base, 'home'));
  const connection = {
    label: 'stub-host',
    closed: false,
    exec: (command: string, o: { stdin?: string } = {}) =>
      new Promise((resolve) => {
        const child = execFile('sh', ['-c', command], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, encoding: 'buffer' }, (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
        child.stdin!.end(o.stdin ?? '');
      }),
  } as unknown as SshConnection;
  return {
    base,
    layout,
    connection,
    hashed: () => {
      const names = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).map((p) => p.slice(p.lastIndexOf('/') + 1)) : [];
      rmSync(log, { force: true });
      return names;
    },
    put: (content) => {
      const h = sha(content);
      mkdirSync(join(layout.objects, h.slice(0, 2)), { recursive: true });
      writeFileSync(join(layout.objects, h.slice(0, 2), h), content, { mode: 0o444 });
      return h;
    },
  };
}

function flip(path: string): void {
  const st = statSync(path);
  chmodSync(path, 0o644);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from('Z'), 0, 1, 0);
  closeSync(fd);
  chmodSync(path, 0o444);
  utimesSync(path, st.atime, st.mtime);
}

test(
  'checkOnHost: hashes an object once; marking it used, linking it into a job and removing the job keep it trusted; a write with mtime put back is caught',
  withTimeout(30_000, async () => {
    const h = host();
    try {
      const a = h.put('alpha\n');
      const b = h.put('bravo\n');
      const gone = sha('never');
      const sizes = new Map([
        [a, 6],
        [b, 6],
        [gone, 5],
      ]);
      assert.equal(await checkOnHost(h.connection, h.layout, sizes), { missing: [gone], quarantined: [] });
      assert.equal(h.hashed().sort(), [a, b].sort(), 'first sight: hashed');
      assert.equal(await checkOnHost(h.connection, h.layout, sizes), { missing: [gone], quarantined: [] });
      assert.equal(h.hashed(), [], 'proved before and only marked used since: not hashed');

      // Staging hard-links `a` into a job's deps folder (the real staging script), then the folder goes.
      const jobDir = join(h.layout.jobs, 'r_x');
      const staged = stagePlan(h.layout, {
        jobDir,
        snapshot: emptyManifest,
        deps: [{ version: 1, size: 6, entries: [{ type: 'file', path: 'a.txt', size: 6, mode: 0o644, hash: asContentHash(a) }] }],
        cacheDirs: [],
      });
      assert.equal(staged.linked, [a]);
      await materializeOnHost(h.connection, staged);
      assert.is(statSync(join(staged.depsDir, 'a.txt')).ino, statSync(h.layout.objectPath(a)).ino);
      assert.equal((await checkOnHost(h.connection, h.layout, new Map([[a, 6]]))).missing, []);
      assert.equal(h.hashed(), [], 'linked by staging: still trusted');
      await removeJobDirOnHost(h.connection, h.layout, jobDir, staged.linked);
      assert.not.ok(existsSync(jobDir));
      assert.equal((await checkOnHost(h.connection, h.layout, new Map([[a, 6]]))).missing, []);
      assert.equal(h.hashed(), [], 'its link removed with the job: still trusted');
      linkSync(h.layout.objectPath(a), join(h.base, 'stray-link'));
      assert.equal((await checkOnHost(h.connection, h.layout, new Map([[a, 6]]))).missing, []);
      assert.equal(h.hashed(), [a], 'a link dstack did not make moves ctime: hashed again');

      flip(h.layout.objectPath(b));
      const r = await checkOnHost(h.connection, h.layout, new Map([[b, 6]]));
      assert.equal(r, { missing: [b], quarantined: [b] });
      assert.equal(h.hashed(), [b]);
      assert.not.ok(existsSync(h.layout.objectPath(b)));
      assert.ok(readdirSync(join(h.layout.root, 'objects', 'quarantine')).some((n) => n.startsWith(`${b}-`)));
    } finally {
      rmSync(h.base, { recursive: true, force: true });
    }
  }),
);

test(
  'checkOnHost: a truncated object or a symlink in its place is refused without hashing',
  withTimeout(30_000, async () => {
    const h = host();
    try {
      const a = h.put('alpha\n');
      chmodSync(h.layout.objectPath(a), 0o644);
      truncateSync(h.layout.objectPath(a), 2);
      assert.equal(await checkOnHost(h.connection, h.layout, new Map([[a, 6]])), { missing: [a], quarantined: [a] });
      assert.equal(h.hashed(), []);
    } finally {
      rmSync(h.base, { recursive: true, force: true });
    }
  }),
);

test(
  'acceptUploads: an upload takes its name only when its bytes are its hash; a wrong one is removed and reported',
  withTimeout(30_000, async () => {
    const h = host();
    try {
      mkdirSync(h.layout.objectsTmp, { recursive: true });
      writeFileSync(join(h.layout.objectsTmp, 'up1'), 'right\n');
      writeFileSync(join(h.layout.objectsTmp, 'up2'), 'wrong\n');
      const good = sha('right\n');
      const bad = sha('expected\n');
      const wrong = await acceptUploads(h.connection, h.layout, [
        { tmp: join(h.layout.objectsTmp, 'up1'), hash: good },
        { tmp: join(h.layout.objectsTmp, 'up2'), hash: bad },
      ]);
      assert.equal(wrong, [bad]);
      assert.is(readFileSync(h.layout.objectPath(good), 'utf8'), 'right\n');
      assert.not.ok(existsSync(h.layout.objectPath(bad)));
      assert.equal(readdirSync(h.layout.objectsTmp).filter((n) => n.startsWith('up')), []);
      h.hashed();
      // Recorded on arrival: its first use hashes nothing.
      assert.equal(await checkOnHost(h.connection, h.layout, new Map([[good, 6]])), { missing: [], quarantined: [] });
      assert.equal(h.hashed(), []);
    } finally {
      rmSync(h.base, { recursive: true, force: true });
    }
  }),
);

test.run();
