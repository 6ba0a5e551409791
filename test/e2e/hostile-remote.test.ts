/**
 * The hostile cases on an SSH pool host (issue 7 §1–§2), end to end over the built binary with a
 * real OpenSSH host: an object of the host's cache truncated, flipped (mtime put back) or deleted is
 * proved bad there and sent again; a damaged local object is never sent; links planted in a cache
 * folder between runs are not followed by the host's mkdir or the bind; a link on the way is refused
 * (DS0305); a chain of links out of an artifact is refused on the host too. After each: the canary
 * untouched, no wrong bytes with exit 0, nothing left on the host, no stack trace.
 */
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, existsSync, openSync, readdirSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeCanary, type Canary } from '../helpers/canary.js';
import { assertNoCrash, containersOf, createProject, type CliResult, type Project } from '../helpers/cli.js';
import { assertNoHostOrContainerLeft, configurePool } from '../helpers/pool.js';
import { removeHost, startHost, type TestHost } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const SIZE = 100_000;
const HASH = createHash('sha256').update(Buffer.alloc(SIZE, 'x')).digest('hex');

const WORKFLOWS = `workflows:
  - name: a
    image: ${IMAGE}
    commands:
      - mkdir -p out
      - head -c ${SIZE} /dev/zero | tr '\\0' x > out/x.bin
    artifacts: [out]
  - name: b
    image: ${IMAGE}
    deps: [a]
    commands:
      - echo b-started
      - sha256sum out/x.bin
`;

let host: TestHost;
let p: Project;
let canary: Canary;

test.before(async () => {
  host = await startHost();
  canary = makeCanary();
  p = await createProject({ workflows: WORKFLOWS });
  await configurePool(p, [host]);
});
test.after(async () => {
  await p?.cleanup();
  await removeHost(host);
  canary.remove();
});

const env = (): Record<string, string> => ({ DSTACK_KNOWN_HOSTS: join(p.home, 'known_hosts') });
const hostObject = (): string => join(host.home, '.dstack', 'objects', 'sha256', HASH.slice(0, 2), HASH);
const localObject = (): string => join(p.home, 'objects', 'sha256', HASH.slice(0, 2), HASH);

const damages: Record<string, (path: string) => void> = {
  truncated: (path) => {
    chmodSync(path, 0o644);
    truncateSync(path, 5_000);
  },
  'a byte flipped, mtime put back': (path) => {
    const st = statSync(path);
    chmodSync(path, 0o644);
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.from('y'), 0, 1, 10);
    closeSync(fd);
    chmodSync(path, 0o444);
    utimesSync(path, st.atime, st.mtime);
  },
  deleted: (path) => unlinkSync(path),
};

async function nothingLeft(r: CliResult): Promise<void> {
  assertNoCrash(r);
  canary.assertUntouched();
  assert.equal(await containersOf(p.home), []);
  assert.equal(readdirSync(join(host.home, '.dstack', 'jobs')), []);
}

for (const [kind, damage] of Object.entries(damages)) {
  test(
    `an object of the host's cache ${kind}: proved bad on the host, sent again; the dependent reads the right bytes`,
    withTimeout(120_000, async () => {
      const first = await p.run(['run', 'b', '--remote', 'pool'], { env: env() });
      assert.is(first.exitCode, 0, first.stderr);
      assert.ok(existsSync(hostObject()), 'the host keeps what its jobs made');
      damage(hostObject());
      const r = await p.run(['run', 'b', '--remote', 'pool'], { env: env() });
      assert.is(r.exitCode, 0, r.stderr);
      assert.match(r.stderr, /\n {2}a: cached/);
      assert.match(r.stderr, new RegExp(`\\n {2}b: sent ${SIZE} bytes \\(1 object\\) to root@127\\.0\\.0\\.1:\\d+\\n`));
      assert.ok(r.stdout.includes(`${HASH}  out/x.bin\n`), r.stdout);
      if (kind !== 'deleted') assert.ok(readdirSync(join(host.home, '.dstack', 'objects', 'quarantine')).some((n) => n.startsWith(HASH)));
      await nothingLeft(r);
      // Sound again: the next run sends nothing and hashes nothing it already proved.
      const again = await p.run(['run', 'b', '--remote', 'pool'], { env: env() });
      assert.is(again.exitCode, 0, again.stderr);
      assert.match(again.stderr, /\n {2}b: sent 0 bytes \(0 objects\)/);
    }),
  );
}

test(
  'a damaged local object is never sent to a host: exit 3 with DS0304, the dependent never starts; the next run re-runs the producer',
  withTimeout(120_000, async () => {
    assert.is((await p.run(['run', 'b', '--remote', 'pool'], { env: env() })).exitCode, 0);
    rmSync(join(host.home, '.dstack', 'objects'), { recursive: true, force: true });
    damages['a byte flipped, mtime put back']!(localObject());
    const r = await p.run(['run', 'b', '--remote', 'pool'], { env: env() });
    assert.is(r.exitCode, 3, r.stderr);
    assert.match(r.stderr, new RegExp(`\\n {2}b: failed — DS0304: stored object ${HASH} is damaged`));
    assert.not.ok(r.stdout.includes('b-started'), r.stdout);
    assert.not.ok(existsSync(hostObject()), 'a damaged object reached the host');
    await nothingLeft(r);
    const next = await p.run(['run', 'b', '--remote', 'pool'], { env: env() });
    assert.is(next.exitCode, 0, next.stderr);
    assert.match(next.stderr, /\n {2}a: running/);
    assert.ok(next.stdout.includes(`b | ${HASH}  out/x.bin\n`), next.stdout);
  }),
);

const poison = (cache: string[], commands: string[]): string =>
  `workflows:\n  - name: poison\n    image: ${IMAGE}\n    env: [CANARY=${canary.dir}]\n    cache: [${cache.map((c) => JSON.stringify(c)).join(', ')}]\n    commands:\n${commands.map((c) => `      - ${JSON.stringify(c)}\n`).join('')}`;

test(
  'cache on the host: links planted in one run are not followed by the next run; a link on the way is refused with DS0305',
  withTimeout(120_000, async () => {
    const q = await createProject({ workflows: poison(['~/.cache'], ['ln -s "$CANARY" /root/.cache/pip', 'ln -s "$CANARY/inner" /root/.cache/deep']) });
    try {
      await configurePool(q, [host]);
      const qenv = { DSTACK_KNOWN_HOSTS: join(q.home, 'known_hosts') };
      const r1 = await q.run(['run', 'poison', '--remote', 'pool'], { env: qenv });
      assert.is(r1.exitCode, 0, r1.stderr);
      writeFileSync(join(q.dir, '.dstack/workflows.yaml'), poison(['~/.cache/pip', '~/.cache/deep'], ['touch ~/.cache/pip/pwned ~/.cache/deep/pwned', 'ls -a ~/.cache/pip']));
      const r2 = await q.run(['run', 'poison', '--remote', 'pool'], { env: qenv });
      assert.is(r2.exitCode, 0, r2.stderr);
      assert.ok(r2.stdout.endsWith('.\n..\npwned\n'), r2.stdout);
      assertNoCrash(r2);
      canary.assertUntouched();

      // A link where no job can write (planted by the test): refused on the host, not followed.
      const [repoKey] = readdirSync(join(host.home, '.dstack', 'cache'));
      const leaf = join(host.home, '.dstack', 'cache', repoKey!, 'poison', 'root%2F.cache%2Fpip');
      rmSync(leaf, { recursive: true });
      symlinkSync(canary.dir, leaf);
      const r3 = await q.run(['run', 'poison', '--remote', 'pool'], { env: qenv });
      assert.is(r3.exitCode, 2, r3.stderr);
      assert.match(r3.stderr, new RegExp(`error DS0305: on root@127\\.0\\.0\\.1:\\d+: '${leaf.replace(/[.%]/g, '\\$&')}' is a symlink \\(to '${canary.dir}'\\); dstack does not follow symlinks there\\n`));
      assertNoCrash(r3);
      canary.assertUntouched();
      assert.equal(await containersOf(q.home), []);
      rmSync(leaf);
    } finally {
      await q.cleanup();
    }
  }),
);

test(
  'artifacts on the host: a chain of links out is refused (DS0302); a fifo is named, not saved',
  withTimeout(120_000, async () => {
    const q = await createProject({
      workflows: `workflows:\n  - name: chain\n    image: ${IMAGE}\n    env: [CANARY=${canary.dir}]\n    commands: [mkdir -p res, ln -s ../b res/a, 'ln -s "$CANARY" b']\n    artifacts: [res]\n  - name: fifo\n    image: ${IMAGE}\n    commands: [mkdir -p out, echo ok > out/ok.txt, mkfifo out/pipe]\n    artifacts: [out]\n`,
    });
    try {
      await configurePool(q, [host]);
      const qenv = { DSTACK_KNOWN_HOSTS: join(q.home, 'known_hosts') };
      const r = await q.run(['run', 'chain', '--remote', 'pool'], { env: qenv });
      assert.is(r.exitCode, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`DS0302: symlink 'res/a' points outside the working directory \\(to '\\.\\./b', resolving to '${canary.dir}' on root@127\\.0\\.0\\.1:\\d+\\)`));
      assertNoCrash(r);
      canary.assertUntouched();
      const f = await q.run(['run', 'fifo', '--remote', 'pool'], { env: qenv });
      assert.is(f.exitCode, 0, f.stderr);
      assert.ok(f.stderr.includes("warning: artifact entry 'out/pipe' is a fifo; not saved\n"), f.stderr);
      assert.equal(await containersOf(q.home), []);
    } finally {
      await q.cleanup();
    }
  }),
);

test(
  'no container and no SSH host is left by this file',
  withTimeout(60_000, async () => {
    await p.cleanup();
    await removeHost(host);
    await assertNoHostOrContainerLeft();
  }),
);

test.run();
