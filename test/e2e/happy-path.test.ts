/**
 * The happy path on busybox, end to end: a two-workflow project where `b` depends on `a`'s artifact;
 * dry runs, `ps --json`, `logs`, reuse of a dep and `--rerun`; variables from variables.yaml, the
 * command line and `${{ run.args }}`, as the container really saw them.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, aThenB, containersOf, createProject, removeContainers, runNameOf, type Project, type PsRun, type PsRunWithJobs } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

const WORKFLOWS = `workflows:
${aThenB(IMAGE)}`;

let p: Project;
let first = '';

test.before(withTimeout(60_000, async () => {
  p = await createProject({ workflows: WORKFLOWS });
}));
test.after(withTimeout(60_000, async () => {
  await p.cleanup();
}));

test(
  '--dry-run before any run: prints the plan, creates no run',
  withTimeout(30_000, async () => {
    try {
      const r = await p.run(['run', 'b', '--dry-run']);
      assert.is(r.exitCode, 0, r.stderr);
      assertNoCrash(r);
      assert.is(
        r.stdout,
        [
          '1. a  runs',
          `   image:    ${IMAGE}`,
          '   commands: echo a-says-hi',
          '             mkdir -p out',
          '             echo content-from-a > out/x.txt',
          '   saves:    out/x.txt',
          '2. b  runs',
          `   image:    ${IMAGE}`,
          '   commands: echo b-reads-$(cat out/x.txt)',
          '   after:    a',
          '',
        ].join('\n'),
      );
      const json = JSON.parse((await p.run(['run', 'b', '--dry-run', '--json'])).stdout) as { jobs: { workflow: string; action: string; deps: string[]; artifacts: string[] }[] };
      assert.equal(
        json.jobs.map((j) => [j.workflow, j.action, j.deps, j.artifacts]),
        [
          ['a', 'run', [], ['out/x.txt']],
          ['b', 'run', ['a'], []],
        ],
      );
      assert.equal(await p.json(['ps', '-a', '--json']), []);
      assert.equal(await containersOf(p.home), []);
    } finally {
      await removeContainers(p.home);
    }
  }),
);

test(
  'run b: runs a then b, b reads a\'s artifact; ps, ps RUN and logs agree',
  withTimeout(60_000, async () => {
    try {
      const r = await p.run(['run', 'b']);
      assert.is(r.exitCode, 0, r.stderr);
      assertNoCrash(r);
      assert.ok(r.stdout.includes('b | b-reads-content-from-a\n'), r.stdout);
      assert.ok(r.stdout.includes('a | a-says-hi\n'), r.stdout);
      first = runNameOf(r.stderr);
      assert.match(first, /^[a-z]+-[a-z]+-\d+$/);
      assert.ok(r.stderr.includes(`Run ${first} done`), r.stderr);

      const runs = await p.json<PsRun[]>(['ps', '--json']);
      assert.equal(
        runs.map((x) => [x.run, x.workflow, x.status]),
        [[first, 'b', 'done']],
      );

      const table = await p.run(['ps']);
      assert.is(table.exitCode, 0, table.stderr);
      assert.match(table.stdout, /^RUN +WORKFLOW +SUBMITTED +OWNER +STATUS +TAG +BACKEND +DURATION\n/);
      assert.match(table.stdout, new RegExp(`\\n${first} +b +(now|\\d+ secs ago) +e2e +done +local +\\d+s\\n$`));

      const detail = await p.json<PsRunWithJobs>(['ps', first, '--json']);
      assert.is(detail.status, 'done');
      assert.equal(
        detail.jobs.map((j) => [j.job, j.workflow, j.status, j.exitCode]),
        [
          [`${first}/a`, 'a', 'done', 0],
          [`${first}/b`, 'b', 'done', 0],
        ],
      );
      assert.equal(detail.jobs[0]!.artifacts, ['out/x.txt']);
      for (const j of detail.jobs) {
        assert.equal(
          j.history.map((h) => h.status),
          ['submitted', 'provisioning', 'downloading', 'running', 'uploading', 'done'],
        );
      }

      const logs = await p.run(['logs', first]);
      assert.is(logs.exitCode, 0, logs.stderr);
      assertNoCrash(logs);
      assert.is(logs.stdout, 'a | a-says-hi\nb | b-reads-content-from-a\n');
    } finally {
      await removeContainers(p.home);
    }
  }),
);

test(
  'a second run of b reuses a; --rerun runs a again',
  withTimeout(60_000, async () => {
    try {
      const plan = await p.run(['run', 'b', '--dry-run']);
      assert.ok(plan.stdout.startsWith(`1. a  cached (run ${first})\n2. b  runs\n`), plan.stdout);

      const again = await p.run(['run', 'b']);
      assert.is(again.exitCode, 0, again.stderr);
      assertNoCrash(again);
      assert.is(again.stdout, 'b-reads-content-from-a\n', 'only b ran, so its output is not prefixed');
      const second = runNameOf(again.stderr);
      assert.ok(again.stderr.includes(`  a: cached (same inputs as ${first}/a)\n`), again.stderr);
      const detail = await p.json<PsRunWithJobs>(['ps', second, '--json']);
      const a = detail.jobs.find((j) => j.workflow === 'a')!;
      assert.is(a.status, 'done');
      assert.is(a.cachedFrom, `${first}/a`);
      assert.equal(a.artifacts, ['out/x.txt']);
      assert.is(detail.jobs.find((j) => j.workflow === 'b')!.status, 'done');

      const rerun = await p.run(['run', 'b', '--rerun']);
      assert.is(rerun.exitCode, 0, rerun.stderr);
      assertNoCrash(rerun);
      assert.ok(rerun.stdout.includes('a | a-says-hi\n'), rerun.stdout);
      assert.ok(rerun.stdout.includes('b | b-reads-content-from-a\n'), rerun.stdout);
      const third = await p.json<PsRunWithJobs>(['ps', runNameOf(rerun.stderr), '--json']);
      assert.equal(
        third.jobs.map((j) => [j.workflow, j.status, j.reason]),
        [
          ['a', 'done', null],
          ['b', 'done', null],
        ],
      );
      assert.is((await p.json<PsRun[]>(['ps', '-a', '--json'])).length, 3);
    } finally {
      await removeContainers(p.home);
    }
  }),
);

test(
  'run --json: one JSON event per line on stdout, job output included',
  withTimeout(60_000, async () => {
    try {
      const r = await p.run(['run', 'a', '--json']);
      assert.is(r.exitCode, 0, r.stderr);
      assertNoCrash(r);
      const events = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { type: string; data?: string; status?: string });
      assert.is(events[0]!.type, 'run-created');
      assert.equal(events.at(-1), { type: 'run-finished', run: (events[0] as unknown as { run: string }).run, status: 'done' });
      assert.ok(events.some((e) => e.type === 'job-log' && e.data === 'a-says-hi\n'), r.stdout);
      assert.equal(
        events.filter((e) => e.type === 'job-status').map((e) => e.status),
        ['provisioning', 'downloading', 'running', 'uploading', 'done'],
      );
    } finally {
      await removeContainers(p.home);
    }
  }),
);

test(
  'a last line without a newline keeps its workflow prefix, live and in logs',
  withTimeout(60_000, async () => {
    const t = await createProject({
      workflows: `workflows:
  - name: first
    image: ${IMAGE}
    commands: [printf 'first-tail']
  - name: second
    image: ${IMAGE}
    deps: [first]
    commands: [printf 'second-line\\nsecond-tail']
`,
    });
    try {
      const r = await t.run(['run', 'second']);
      assert.is(r.exitCode, 0, r.stderr);
      assert.is(r.stdout, 'first  | first-tail\nsecond | second-line\nsecond | second-tail\n');
      const logs = await t.run(['logs', runNameOf(r.stderr)]);
      assert.is(logs.stdout, r.stdout);
    } finally {
      await t.cleanup();
    }
  }),
);

test(
  'variables: variables.yaml defaults, --name override, run.args passthrough, $$',
  withTimeout(60_000, async () => {
    const v = await createProject({
      workflows: `workflows:
  - name: v
    image: ${IMAGE}
    env:
      - WHO=container
    commands:
      - echo "greeting=\${{ variables.greeting }} name=\${{ name }} run=\${{ run.name }}"
      - printf '<%s>' \${{ run.args }}; echo
      - echo 'dollar=$$x' "who=$$WHO"
`,
      variables: 'variables:\n  global:\n    greeting: hello\n  v:\n    name: default-name\n',
    });
    try {
      const d = await v.run(['run', 'v']);
      assert.is(d.exitCode, 0, d.stderr);
      assertNoCrash(d);
      assert.is(d.stdout, `greeting=hello name=default-name run=${runNameOf(d.stderr)}\n<>\ndollar=$x who=container\n`);

      const o = await v.run(['run', 'v', '--name', 'cli-name', 'extra1', '--flag2', 'two words', '--', '--name', 'kept']);
      assert.is(o.exitCode, 0, o.stderr);
      assertNoCrash(o);
      assert.is(o.stdout, `greeting=hello name=cli-name run=${runNameOf(o.stderr)}\n<extra1><--flag2><two words><--name><kept>\ndollar=$x who=container\n`);
      const rec = await v.json<PsRun>(['ps', runNameOf(o.stderr), '--json']);
      assert.equal(rec.args, ['extra1', '--flag2', 'two words', '--name', 'kept']);

      const eq = await v.run(['run', 'v', '--name=equals-form', '--greeting', 'hi']);
      assert.is(eq.exitCode, 0, eq.stderr);
      assert.ok(eq.stdout.startsWith('greeting=hi name=equals-form '), eq.stdout);
    } finally {
      await v.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
