/**
 * Logs end to end: the terminal sees everything while the store keeps the limit (start, marker,
 * end); `logs -f` ends with the run's status and exits like `run`; a reader that goes away ends
 * `logs` quietly; and `ps`/`prune`/`rm -a` act on the current project unless `-A`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject, runNameOf, type PsRun } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const BIN = new URL('../../bin/dstack', import.meta.url).pathname;

test(
  'past DSTACK_LOG_LIMIT the terminal still shows every line; logs shows the start, a marker and the end',
  withTimeout(90_000, async () => {
    const p = await createProject({
      workflows: `workflows:\n  - name: lines\n    image: ${IMAGE}\n    commands:\n      - seq 1 100000\n`,
      env: { DSTACK_LOG_LIMIT: '64KiB' },
    });
    try {
      const r = await p.run(['run', 'lines']);
      assert.is(r.exitCode, 0, r.stderr);
      assert.is(r.stdout.split('\n').length - 1, 100_000, 'every line shown live');
      const logs = await p.run(['logs', runNameOf(r.stderr)]);
      assert.is(logs.exitCode, 0, logs.stderr);
      assert.ok(logs.stdout.startsWith('1\n2\n3\n'), logs.stdout.slice(0, 50));
      assert.ok(logs.stdout.endsWith('99999\n100000\n'), logs.stdout.slice(-50));
      assert.match(logs.stderr, /\[dstack: this job printed more than the 64 KiB of output kept per job \(DSTACK_LOG_LIMIT\): the first 32 KiB and the last 32 KiB are kept/);
      assert.ok(logs.stdout.length <= 64 * 1024 + 64, `stored ${logs.stdout.length} bytes`);
      assert.not.ok(logs.stdout.includes('\n50000\n'), 'the middle was cut');

      const bad = await p.run(['run', 'lines'], { env: { DSTACK_LOG_LIMIT: 'lots' } });
      assertNoCrash(bad);
      assert.is(bad.exitCode, 2, bad.stderr);
      assert.is(bad.stderr.split('\n')[0], "error DS0120: DSTACK_LOG_LIMIT must be a size, 0 or unlimited, got 'lots'");
      assert.is((await p.json<PsRun[]>(['ps', '-a', '--json'])).length, 1, 'no run recorded for the refused one');
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'logs -f ends with the run status and exits like run: 1 failed, 0 done; logs RUN | head ends quietly',
  withTimeout(90_000, async () => {
    const p = await createProject({
      workflows: `workflows:
  - name: fails
    image: ${IMAGE}
    commands: [echo before, sleep 1, exit 4]
  - name: ok
    image: ${IMAGE}
    commands: [seq 1 200000]
`,
    });
    try {
      const failed = await p.run(['run', 'fails', '-d']);
      assert.is(failed.exitCode, 0, failed.stderr);
      const follow = await p.run(['logs', failed.stdout.trim(), '-f']);
      assertNoCrash(follow);
      assert.is(follow.exitCode, 1, follow.stderr);
      assert.is(follow.stdout, 'before\n');
      assert.ok(follow.stderr.endsWith(`Run ${failed.stdout.trim()} failed\n`), follow.stderr);

      const done = await p.run(['run', 'ok']);
      assert.is(done.exitCode, 0, done.stderr);
      const name = runNameOf(done.stderr);
      const again = await p.run(['logs', name, '-f']);
      assert.is(again.exitCode, 0, again.stderr);
      assert.is(again.stderr, `Run ${name} done\n`);

      // The reader goes after one line: no EPIPE trace, and dstack's own status is 0.
      const piped = await execa('bash', ['-c', `set -o pipefail; node ${BIN} logs ${name} | head -n 1`], {
        cwd: p.dir,
        env: p.env,
        extendEnv: false,
        reject: false,
      });
      assert.is(piped.stdout, '1');
      assert.is(piped.stderr, '');
      assert.is(piped.exitCode, 0);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'logs -f of a run stopped meanwhile prints its output, then "Run NAME stopped", and exits 130 like run',
  withTimeout(90_000, async () => {
    const p = await createProject({
      workflows: `workflows:
  - name: waits
    image: ${IMAGE}
    commands:
      - trap 'echo got TERM; exit 0' TERM
      - echo ready
      - while true; do sleep 0.2; done
`,
    });
    try {
      const started = await p.run(['run', 'waits', '-d']);
      assert.is(started.exitCode, 0, started.stderr);
      const name = started.stdout.trim();
      const follow = p.start(['logs', name, '-f']);
      await follow.waitFor((out) => out.includes('ready\n'), 30_000);
      const stop = await p.run(['stop', name]);
      assert.is(stop.exitCode, 0, stop.stderr);
      const r = await follow.result;
      assertNoCrash(r);
      assert.is(r.exitCode, 130, r.stderr);
      assert.is(r.stdout, 'ready\ngot TERM\n');
      // The job's own stderr comes first (a shell may say `Terminated` of the command the stop ended).
      assert.ok(r.stderr.endsWith(`Run ${name} stopped\n`), r.stderr);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'ps, prune and rm -a act on the current project; -A (or a folder outside any project) on all, with a PROJECT column',
  withTimeout(120_000, async () => {
    const a = await createProject({ workflows: `workflows:\n  - name: a\n    image: ${IMAGE}\n    commands: [echo a]\n` });
    const bDir = join(a.dir, '..', `${a.dir.split('/').at(-1)}-b`);
    try {
      await mkdir(join(bDir, '.dstack'), { recursive: true });
      await writeFile(join(bDir, '.dstack', 'workflows.yaml'), `workflows:\n  - name: b\n    image: ${IMAGE}\n    commands: [echo b]\n`);
      const ra = runNameOf((await a.run(['run', 'a'])).stderr);
      const rb = runNameOf((await a.run(['run', 'b'], { cwd: bDir })).stderr);

      const inA = await a.run(['ps']);
      assert.is(inA.exitCode, 0, inA.stderr);
      assert.match(inA.stdout, ra);
      assert.not.match(inA.stdout, rb);
      assert.not.match(inA.stdout, 'PROJECT');
      const all = await a.run(['ps', '-A']);
      assert.match(all.stdout, /^RUN .* PROJECT\n/);
      assert.match(all.stdout, new RegExp(`${rb} .* ${bDir}\\n`));
      assert.match(all.stdout, ra);
      const outside = await a.run(['ps'], { cwd: a.home });
      assert.match(outside.stdout, ra);
      assert.match(outside.stdout, rb);
      const json = await a.json<(PsRun & { project: string })[]>(['ps', '--json'], { cwd: bDir });
      assert.equal(json.map((r) => [r.run, r.project]), [[rb, bDir]]);

      const prune = await a.run(['prune', '--older-than', '0s', '-y', '--json']);
      assert.is(prune.exitCode, 0, prune.stderr);
      assert.equal((JSON.parse(prune.stdout) as { runs: string[] }).runs, [ra]);
      assert.equal((await a.json<PsRun[]>(['ps', '-a', '-A', '--json'])).map((r) => r.run), [rb], "b's run is not pruned from a");
      const again = await a.run(['prune', '--older-than', '0s', '-y']);
      assert.match(again.stderr, /^Freed 0 B: 0 runs, 0 objects\n/);
      assert.match(again.stderr, /\n1 run of other projects is old enough too; `dstack prune -A` removes them as well\n/);
      const rm = await a.run(['rm', '-a', '-y']);
      assert.is(rm.stderr, 'No finished runs to remove\n');
      const rmAll = await a.run(['rm', '-a', '-A', '-y']);
      assert.is(rmAll.exitCode, 0, rmAll.stderr);
      assert.equal(await a.json<PsRun[]>(['ps', '-a', '-A', '--json']), []);
    } finally {
      await a.cleanup();
      await execa('rm', ['-rf', bDir]);
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
