/**
 * Hostile jobs and symlinks, end to end on real Docker (issue 7 §1): a job that plants links in its
 * `cache:` folder between runs, pointing at a host folder (a canary) and at the dstack home it reads
 * from /proc/self/mountinfo; a job whose artifacts are links out, chains of links, or sit under a
 * link out; fifos among artifacts. After each: the canary untouched, no container and no job folder
 * left, no stack trace.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeCanary, type Canary } from '../helpers/canary.js';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, type CliResult, type Project } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

let canary: Canary;
test.before(() => {
  canary = makeCanary();
});
test.after(() => canary.remove());

/** After every hostile run: the canary as it was, nothing of the job left behind. */
async function nothingEscaped(p: Project, r: CliResult): Promise<void> {
  assertNoCrash(r);
  canary.assertUntouched();
  assert.equal(await containersOf(p.home), []);
  assert.equal(readdirSync(join(p.home, 'jobs')), []);
}

const workflow = (cache: string[], commands: string[], extra = ''): string =>
  `workflows:\n  - name: poison\n    image: ${IMAGE}\n    cache: [${cache.map((c) => JSON.stringify(c)).join(', ')}]\n    commands:\n${commands.map((c) => `      - ${JSON.stringify(c)}\n`).join('')}${extra}`;

test(
  'cache: links planted in one run (to the canary, to the dstack home from mountinfo) are never followed by the next run\'s mkdir or bind',
  withTimeout(120_000, async () => {
    const p = await createProject({ workflows: '' });
    try {
      // Run 1 caches ~/.cache and, inside it, plants where run 2's caches would live in a nested layout.
      const plant = [
        // mountinfo: field 4 is the folder's path on the host, field 5 where it is mounted.
        "HOSTCACHE=$(awk '$5 == \"/root/.cache\" { print $4 }' /proc/self/mountinfo)",
        'echo "learnt $HOSTCACHE"',
        'test -n "$HOSTCACHE"',
        'HOME_ON_HOST=${HOSTCACHE%/cache/*}',
        'ln -s "$CANARY" /root/.cache/pip',
        'ln -s "$HOME_ON_HOST" /root/.cache/home',
        'mkdir -p /root/.cache/deep && ln -s "$CANARY/inner" /root/.cache/deep/er',
      ];
      writeFileSync(join(p.dir, '.dstack/workflows.yaml'), workflow(['~/.cache'], plant, `    env: [CANARY=${canary.dir}]\n`));
      const r1 = await p.run(['run', 'poison']);
      assert.is(r1.exitCode, 0, r1.stderr);
      assert.match(r1.stdout, /learnt \/.*\/cache\/[0-9a-f]{16}\/poison\/\S+\n/);
      await nothingEscaped(p, r1);

      // Run 2 asks for caches exactly where the links are, and writes into them.
      const use = ['for d in ~/.cache/pip ~/.cache/home ~/.cache/deep/er; do touch $d/pwned && echo wrote-$d; done', 'ls -a ~/.cache/pip'];
      writeFileSync(join(p.dir, '.dstack/workflows.yaml'), workflow(['~/.cache/pip', '~/.cache/home', '~/.cache/deep/er'], use));
      const r2 = await p.run(['run', 'poison']);
      assert.is(r2.exitCode, 0, r2.stderr);
      // Each is a fresh, empty folder of its own.
      assert.match(r2.stdout, /wrote-\/root\/\.cache\/pip\nwrote-\/root\/\.cache\/home\nwrote-\/root\/\.cache\/deep\/er\n\.\n\.\.\npwned\n/);
      await nothingEscaped(p, r2);
      assert.not.ok(existsSync(join(p.home, 'pwned')), 'the dstack home was bound into the job');

      // Run 1 again: its own cache still holds the links it planted, harmless inside its own folder.
      writeFileSync(join(p.dir, '.dstack/workflows.yaml'), workflow(['~/.cache'], ['ls ~/.cache', 'readlink ~/.cache/pip']));
      const r3 = await p.run(['run', 'poison']);
      assert.is(r3.exitCode, 0, r3.stderr);
      assert.ok(r3.stdout.endsWith(`${canary.dir}\n`), r3.stdout);
      await nothingEscaped(p, r3);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'cache: a link on the way to a cache folder (where no job can write; planted here by the test) is refused with DS0305, not followed',
  withTimeout(60_000, async () => {
    const p = await createProject({ workflows: workflow(['~/.cache/pip'], ['touch ~/.cache/pip/pwned']) });
    try {
      const r1 = await p.run(['run', 'poison']);
      assert.is(r1.exitCode, 0, r1.stderr);
      const [repoKey] = readdirSync(join(p.home, 'cache'));
      const leaf = join(p.home, 'cache', repoKey!, 'poison', 'root%2F.cache%2Fpip');
      rmSync(leaf, { recursive: true });
      symlinkSync(canary.dir, leaf);
      const r2 = await p.run(['run', 'poison']);
      assert.is(r2.exitCode, 2, r2.stderr);
      assert.ok(
        r2.stderr.includes(
          `error DS0305: the cache folder of /root/.cache/pip for poison: '${leaf}' is a symlink (to '${canary.dir}'); dstack does not follow symlinks there\n  = a job (or someone) put the link there; remove it (\`rm '${leaf}'\`) and run again\n`,
        ),
        r2.stderr,
      );
      await nothingEscaped(p, r2);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'artifacts: a link out, a chain out, a link on the way out: refused (DS0302), nothing of the canary stored; fifos and devices named, not saved',
  withTimeout(120_000, async () => {
    const job = (name: string, commands: string[], artifacts: string[]): string =>
      `  - name: ${name}\n    image: ${IMAGE}\n    env: [CANARY=${canary.dir}]\n    commands:\n${commands.map((c) => `      - ${JSON.stringify(c)}\n`).join('')}    artifacts: [${artifacts.join(', ')}]\n`;
    const p = await createProject({
      workflows: `workflows:\n${job('direct', ['rmdir out', 'ln -s "$CANARY" out'], ['out'])}${job('chain', ['mkdir -p res', 'ln -s ../b res/a', 'ln -s "$CANARY/secret.txt" b'], ['res'])}${job(
        'sneaky',
        ['mkdir -p res/d', 'ln -s .. res/d/up', 'ln -s d/up/../.. res/s'],
        ['res'],
      )}${job('under', ['rm -rf via', 'ln -s "$CANARY" via'], ['via/secret.txt'])}${job('specials', ['mkdir -p out', 'echo fine > out/ok.txt', 'mkfifo out/pipe', 'mknod out/null c 1 3'], ['out'])}`,
    });
    try {
      const expected: Record<string, RegExp> = {
        direct: /DS0302: symlink 'out' points outside the working directory \(to '\/.*canary.*'\)/,
        chain: /DS0302: symlink 'res\/a' points outside the working directory \(to '\.\.\/b', through the symlink 'b'\)/,
        sneaky: /DS0302: symlink 'res\/s' points outside the working directory \(to 'd\/up\/\.\.\/\.\.', through the symlink 'res\/d\/up'\)/,
        under: /DS0302: artifact path 'via\/secret\.txt' is reached through a symlink that leaves the working directory \('via' -> '\/.*canary.*'\)/,
      };
      for (const [name, message] of Object.entries(expected)) {
        const r = await p.run(['run', name]);
        assert.is(r.exitCode, 2, `${name}: ${r.stderr}`);
        assert.match(r.stderr, message);
        await nothingEscaped(p, r);
        const ls = await p.run(['ls', (await p.json<{ run: string }[]>(['ps', '--json']))[0]!.run]);
        assert.not.match(ls.stdout, /secret|deep/);
      }
      const s = await p.run(['run', 'specials']);
      assert.is(s.exitCode, 0, s.stderr);
      assert.ok(s.stderr.includes("warning: artifact entry 'out/pipe' is a fifo; not saved\n"), s.stderr);
      assert.ok(s.stderr.includes("warning: artifact entry 'out/null' is a device; not saved\n"), s.stderr);
      assert.ok(s.stderr.includes('saved 1 artifact file (5 B)'), s.stderr);
      await nothingEscaped(p, s);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'cp never writes a link that points outside DST, alone or through a link already there',
  withTimeout(60_000, async () => {
    const p = await createProject({
      workflows: `workflows:\n  - name: links\n    image: ${IMAGE}\n    commands:\n      - mkdir -p out/d\n      - echo x > out/d/f\n      - ln -s d/f out/ok\n      - ln -s ../up/x out/through\n    artifacts: [out]\n`,
    });
    try {
      const r = await p.run(['run', 'links']);
      assert.is(r.exitCode, 0, r.stderr);
      const run = (await p.json<{ run: string }[]>(['ps', '--json']))[0]!.run;
      // `out/through` stays inside the run's tree (../up/x is under /workflow)…
      const dst = join(p.dir, 'dst');
      mkdirSync(dst);
      symlinkSync(canary.dir, join(dst, 'up'));
      // …but copied alone into dst it would reach the canary through dst/up.
      const cp = await p.run(['cp', run, 'out', join(dst, 'sub')]);
      assert.is(cp.exitCode, 0, cp.stderr);
      assertNoCrash(cp);
      assert.ok(cp.stderr.includes('warning: skipped the symlink through -> ../up/x: it points outside what is copied\n'), cp.stderr);
      assert.equal(readdirSync(join(dst, 'sub')).sort(), ['d', 'ok']);
      canary.assertUntouched();
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
