/**
 * Faults outside the user's control, end to end: an image that is not there (offline), no Docker
 * engine at all, and a job that fails. Each gets its exit status, its DS code and a record that
 * says what happened.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, containersOf, createProject, runNameOf, type PsJob } from '../helpers/cli.js';
import { NOWHERE } from '../helpers/registry.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
// On a loopback registry where nothing answers: the engine's attempt never leaves this machine.
const MISSING = `${NOWHERE}/dstack-test/nonexistent-e2e:latest`;

test(
  'an image that is neither local nor pullable (offline): exit 3, DS0201 names it',
  withTimeout(60_000, async () => {
    const p = await createProject({ workflows: `workflows:\n  - name: a\n    image: ${MISSING}\n    commands: [echo hi]\n` });
    try {
      const r = await p.run(['run', 'a']);
      assert.is(r.exitCode, 3, r.stderr);
      assertNoCrash(r);
      assert.ok(r.stderr.includes(`error DS0201: image '${MISSING}' is not available locally and could not be pulled (`), r.stderr);
      assert.ok(r.stderr.includes(`  = build it locally (\`docker build -t ${MISSING} .\`) or pull it yourself with \`docker pull ${MISSING}\`\n`), r.stderr);
      const [run] = await p.json<{ run: string; status: string }[]>(['ps', '--json']);
      assert.is(run?.status, 'failed');
      const detail = await p.json<{ jobs: PsJob[] }>(['ps', run!.run, '--json']);
      assert.is(detail.jobs[0]!.status, 'failed');
      assert.ok(detail.jobs[0]!.reason?.startsWith(`DS0201: image '${MISSING}'`), String(detail.jobs[0]!.reason));
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'no Docker engine: exit 3, DS0200 says how to start one, nothing recorded',
  withTimeout(30_000, async () => {
    const p = await createProject({ workflows: `workflows:\n  - name: a\n    image: ${IMAGE}\n    commands: [echo hi]\n` });
    try {
      const r = await p.run(['run', 'a'], { env: { DOCKER_HOST: 'unix:///tmp/nonexistent.sock' } });
      assert.is(r.exitCode, 3, r.stderr);
      assertNoCrash(r);
      assert.is(r.stdout, '');
      assert.is(
        r.stderr,
        'error DS0200: no Docker engine answers at unix:///tmp/nonexistent.sock\n  = start one: `sudo dockerd &` or `scripts/ensure-docker.sh`, or set DOCKER_HOST\n',
      );
      assert.equal(await p.json(['ps', '-a', '--json']), []);
      // Listing runs needs no engine.
      const ps = await p.run(['ps'], { env: { DOCKER_HOST: 'unix:///tmp/nonexistent.sock' } });
      assert.is(ps.exitCode, 0, ps.stderr);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'a job that exits 7: exit 1, failed with exit code 7, its dependent not run, logs kept',
  withTimeout(60_000, async () => {
    const p = await createProject({
      workflows: `workflows:
  - name: fails
    image: ${IMAGE}
    commands:
      - echo output-before-failing
      - exit 7
  - name: after
    image: ${IMAGE}
    deps: [fails]
    commands: [echo never]
`,
    });
    try {
      const r = await p.run(['run', 'after']);
      assert.is(r.exitCode, 1, r.stderr);
      assertNoCrash(r);
      assert.ok(r.stdout.includes('output-before-failing'), r.stdout);
      assert.not.ok(r.stdout.includes('never'), r.stdout);
      assert.match(r.stderr, /^ {2}fails\s*: failed — exited with code 7$/m);
      const name = runNameOf(r.stderr);
      assert.ok(r.stderr.includes(`Run ${name} failed\n`), r.stderr);

      const [run] = await p.json<{ run: string; status: string }[]>(['ps', '--json']);
      assert.equal([run?.run, run?.status], [name, 'failed']);
      const detail = await p.json<{ status: string; jobs: PsJob[] }>(['ps', name, '--json']);
      assert.equal(
        detail.jobs.map((j) => [j.workflow, j.status, j.exitCode, j.reason]),
        [
          ['fails', 'failed', 7, 'exited with code 7'],
          ['after', 'aborted', null, 'not run: dependency fails ended failed'],
        ],
      );
      const logs = await p.run(['logs', name]);
      assert.is(logs.exitCode, 0, logs.stderr);
      assert.ok(logs.stdout.includes('output-before-failing\n'), logs.stdout);
      assert.equal(await containersOf(p.home), [], 'the failed job\'s container is removed');
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
