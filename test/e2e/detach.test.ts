/**
 * `run -d`, end to end: the command returns at once with the run's name, the run goes on with no
 * terminal to `done` and saves its artifacts, and `logs -f` follows it to its end.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, sleep, type PsRunWithJobs } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

const FINAL = new Set(['done', 'failed', 'stopped', 'aborted', 'interrupted']);

test(
  'run -d returns at once; the run reaches done, saves artifacts; logs -f prints it all and returns',
  withTimeout(60_000, async () => {
    const p = await createProject({
      workflows: `workflows:
  - name: bg
    image: ${IMAGE}
    commands:
      - echo start
      - sleep 2
      - mkdir -p out && echo result > out/r.txt
      - echo end
    artifacts: [out]
`,
    });
    let name = '';
    try {
      const started = Date.now();
      const r = await p.run(['run', 'bg', '-d']);
      const took = Date.now() - started;
      assert.is(r.exitCode, 0, r.stderr);
      assertNoCrash(r);
      assert.match(r.stdout, /^[a-z]+-[a-z]+-\d+\n$/);
      name = r.stdout.trim();
      assert.ok(r.stderr.endsWith(`Run ${name} goes on in the background; follow it with \`dstack logs ${name} -f\`\n`), r.stderr);
      assert.ok(took < 10_000, `run -d took ${took} ms`);
      const early = await p.json<PsRunWithJobs>(['ps', name, '--json']);
      assert.not.ok(FINAL.has(early.status), `the job sleeps 2 s, yet the run is already ${early.status}`);

      const logs = await p.run(['logs', name, '-f'], { timeoutMs: 30_000 });
      assert.is(logs.exitCode, 0, logs.stderr);
      assertNoCrash(logs);
      assert.is(logs.stdout, 'start\nend\n');

      const run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
      assert.is(run.status, 'done');
      assert.equal(run.jobs.map((j) => [j.status, j.artifacts]), [['done', ['out/r.txt']]]);
      assert.equal(await containersOf(p.home), []);
    } finally {
      if (name) {
        // Should the test fail midway, leave no supervisor behind.
        const now = await p.run(['ps', name, '--json']).catch(() => undefined);
        if (now?.exitCode === 0 && !FINAL.has((JSON.parse(now.stdout) as PsRunWithJobs).status)) await p.run(['stop', '-x', name]);
      }
      await p.cleanup();
    }
  }),
);

test(
  'run -d --json prints the run as JSON; a detached failure is recorded as failed',
  withTimeout(60_000, async () => {
    const p = await createProject({ workflows: `workflows:\n  - name: bad\n    image: ${IMAGE}\n    commands: [echo detached-out, exit 3]\n` });
    let name = '';
    try {
      const r = await p.run(['run', 'bad', '-d', '--json']);
      name = /"run":"([^"]+)"/.exec(r.stdout)?.[1] ?? '';
      assert.is(r.exitCode, 0, r.stderr);
      // --json on `run` is a stream of JSON lines (the run's events), ending with the detached run.
      const lines = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.is(lines[0]!.type, 'run-created');
      const out = lines.at(-1) as { run: string; detached: boolean };
      name = out.run;
      assert.equal(out, { run: lines[0]!.run, detached: true });
      let run: PsRunWithJobs | undefined;
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(200)) {
        run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
        if (FINAL.has(run.status)) break;
      }
      assert.is(run?.status, 'failed');
      assert.is((await p.run(['logs', name])).stdout, 'detached-out\n');
    } finally {
      if (name) await p.run(['stop', '-x', name]);
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
