/**
 * Fingerprint caching end to end, on busybox: `b` depends on `a`, which writes an artifact from a
 * script file and a data folder it lists as `inputs:`. A second `run b` reuses `a` (no machine: its
 * history goes straight from submitted to done, and it has no log in the new run); each kind of
 * input change is a miss, and `--dry-run --explain` names it: a code file, an `inputs:` path (a
 * change outside them is not), a variable (file and command line), an argument of the named
 * workflow (a dep never sees them), the image (a new
 * image under the same name), and an upstream artifact (a different output misses, the same output
 * after a rerun hits). Then `--rerun` and `--reuse`.
 */
import { writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { aThenB, assertNoContainersLeft, assertNoCrash, createProject, docker, runNameOf, type Project, type PsJob } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const BASE = 'dstack-test/busybox:latest';
/** A name of our own, so re-tagging it cannot disturb other suites sharing the engine. */
const IMAGE = `dstack-e2e-cache:${process.pid}`;
const OTHER = `dstack-e2e-cache-other:${process.pid}`;

const WORKFLOWS = `workflows:
  - name: a
    image: ${IMAGE}
    inputs: [a.sh, src]
    commands:
      - sh a.sh \${{ greeting }} \${{ run.args }}
    artifacts: [out]
  - name: b
    image: ${IMAGE}
    deps: [a]
    commands:
      - echo b-read-$$(cat out/x.txt)
  - name: u
    image: ${IMAGE}
    commands:
      - mkdir -p out && cat /proc/sys/kernel/random/uuid > out/u.txt
    artifacts: [out]
  - name: v
    image: ${IMAGE}
    deps: [u]
    commands: [cat out/u.txt]
  - name: absent
    image: dstack-test/absent-e2e:none
    commands: [echo never]
`;

let p: Project;

/** The plan's headers and `why:` lines (with their continuation lines), the rest left out. */
function explained(stdout: string): string[] {
  const out: string[] = [];
  let inWhy = false;
  for (const line of stdout.split('\n')) {
    if (/^\d+\. /.test(line)) {
      out.push(line);
      inWhy = false;
    } else if (line.startsWith('   why:')) {
      out.push(line);
      inWhy = true;
    } else if (inWhy && line.startsWith('             ')) out.push(line);
    else inWhy = false;
  }
  return out;
}

async function explain(...args: string[]): Promise<string[]> {
  const r = await p.run(['run', ...args, '--dry-run', '--explain']);
  assert.is(r.exitCode, 0, r.stderr);
  assertNoCrash(r);
  return explained(r.stdout);
}

async function run(...args: string[]): Promise<{ name: string; jobs: Map<string, PsJob>; stdout: string }> {
  const r = await p.run(['run', ...args]);
  assert.is(r.exitCode, 0, r.stderr);
  assertNoCrash(r);
  const name = runNameOf(r.stderr);
  const detail = await p.json<{ jobs: PsJob[] }>(['ps', name, '--json']);
  return { name, jobs: new Map(detail.jobs.map((j) => [j.workflow, j])), stdout: r.stdout };
}

/** Reused: recorded done from the job that ran, with no machine (never provisioned) and no log. */
async function assertReused(r: { name: string; jobs: Map<string, PsJob> }, workflow: string, from: string): Promise<void> {
  const j = r.jobs.get(workflow)!;
  assert.is(j.status, 'done');
  assert.is(j.cachedFrom, `${from}/${workflow}`);
  assert.is(j.reason, null);
  assert.equal(j.history.map((h) => h.status), ['submitted', 'done']);
  const logs = await p.run(['logs', r.name]);
  assert.not.ok(logs.stdout.split('\n').some((l) => l.startsWith(`${workflow} |`)), logs.stdout);
}

const ran = (r: { jobs: Map<string, PsJob> }, workflow: string): boolean => {
  const j = r.jobs.get(workflow)!;
  return j.status === 'done' && j.reason === null && j.history.some((h) => h.status === 'running');
};

const imageId = async (image: string): Promise<string> => (await docker(['image', 'inspect', '--format', '{{.Id}}', image])).trim();
const short = (id: string): string => `${id.slice(0, 19)}…`;

test.before(withTimeout(60_000, async () => {
  await docker(['tag', BASE, IMAGE]);
  p = await createProject({
    workflows: WORKFLOWS,
    variables: 'variables:\n  a:\n    greeting: hello\n',
    files: {
      'a.sh': 'mkdir -p out\necho "$1 $(cat src/data.txt) $2" > out/x.txt\necho a-ran\n',
      'src/data.txt': 'data1\n',
      'notes.txt': 'not an input of a\n',
    },
  });
}));
test.after(withTimeout(60_000, async () => {
  await p.cleanup();
  await docker(['rmi', IMAGE]).catch(() => undefined);
  await docker(['rmi', OTHER]).catch(() => undefined);
}));

let last = '';

test(
  'first run, then a second run of b reuses a; a change outside inputs: does not invalidate',
  withTimeout(30_000, async () => {
    assert.equal(await explain('b'), ['1. a  runs', '   why:      first run', '2. b  runs', '   why:      runs after a (its inputs change)']);
    const first = await run('b');
    assert.ok(ran(first, 'a') && ran(first, 'b'));
    assert.ok(first.stdout.includes('b | b-read-hello data1\n'), first.stdout);

    assert.equal(await explain('b'), [`1. a  cached (run ${first.name})`, '2. b  runs', '   why:      named workflow (runs unless --reuse)']);
    // b has no inputs: (its whole code counts), a does, and notes.txt is not one of them.
    await appendFile(join(p.dir, 'notes.txt'), 'edited\n');
    assert.equal(await explain('b'), [`1. a  cached (run ${first.name})`, '2. b  runs', '   why:      file notes.txt changed']);
    const second = await run('b');
    await assertReused(second, 'a', first.name);
    assert.ok(ran(second, 'b'));
    assert.is(second.stdout, 'b-read-hello data1\n', 'only b printed, unprefixed');
    last = first.name;
  }),
);

test(
  'a code file a reads, and an inputs: path, each make a run again, named by --explain',
  withTimeout(30_000, async () => {
    await appendFile(join(p.dir, 'a.sh'), 'echo a-v2\n');
    assert.equal(await explain('b'), ['1. a  runs', '   why:      file a.sh changed', '2. b  runs', '   why:      runs after a (its inputs change)']);
    const code = await run('b');
    assert.ok(ran(code, 'a'), 'a.sh changed');

    await writeFile(join(p.dir, 'src/data.txt'), 'data2\n');
    await writeFile(join(p.dir, 'src/new.txt'), 'more\n');
    assert.equal(await explain('b'), [
      '1. a  runs',
      '   why:      file src/data.txt changed',
      '             file src/new.txt added',
      '2. b  runs',
      '   why:      runs after a (its inputs change)',
    ]);
    const data = await run('b');
    assert.ok(ran(data, 'a'));
    assert.ok(data.stdout.includes('b | b-read-hello data2\n'), data.stdout);
    last = data.name;
    assert.equal(await explain('b'), [`1. a  cached (run ${last})`, '2. b  runs', '   why:      named workflow (runs unless --reuse)']);
  }),
);

test(
  'a variable (variables.yaml, then --var on the command line) and an argument are misses',
  withTimeout(30_000, async () => {
    assert.equal((await explain('b', '--greeting', 'hey')).slice(0, 2), ['1. a  runs', '   why:      variable greeting: hello → hey']);
    // run.args are the named workflow's only (issue 8): a dep that reads them is not re-run for
    // them; named, a workflow sees them, and new ones are a miss.
    assert.equal((await explain('b', 'extra-arg')).slice(0, 1), [`1. a  cached (run ${last})`]);
    assert.equal((await explain('a', 'extra-arg', '--reuse')).slice(0, 2), ['1. a  runs', '   why:      arguments changed']);
    const withArg = await run('a', 'extra-arg');
    assert.ok(ran(withArg, 'a'));
    assert.equal(await explain('a', 'extra-arg', '--reuse'), [`1. a  cached (run ${withArg.name})`]);

    await writeFile(join(p.dir, '.dstack/variables.yaml'), 'variables:\n  a:\n    greeting: hi\n');
    assert.equal((await explain('b')).slice(0, 2), ['1. a  runs', '   why:      variable greeting: hello → hi']);
    const fromFile = await run('b');
    assert.ok(ran(fromFile, 'a'));
    assert.ok(fromFile.stdout.includes('b | b-read-hi data2\n'), fromFile.stdout);
    last = fromFile.name;
  }),
);

test(
  'a different image under the same name is a miss; back to the first image hits again',
  withTimeout(30_000, async () => {
    const before = await imageId(IMAGE);
    // A different image id with the same content: a container of the base, committed with a label.
    const made = (await docker(['create', BASE, 'true'])).trim();
    try {
      await docker(['commit', '--change', `LABEL dstack.e2e=${process.pid}`, made, OTHER]);
    } finally {
      await docker(['rm', '-f', made]);
    }
    const after = await imageId(OTHER);
    assert.is.not(after, before);
    await docker(['tag', OTHER, IMAGE]);
    try {
      assert.equal((await explain('b')).slice(0, 2), ['1. a  runs', `   why:      image ${IMAGE} changed (${short(before)} → ${short(after)})`]);
      assert.ok(ran(await run('b'), 'a'), 'a new image is a miss');
    } finally {
      await docker(['tag', BASE, IMAGE]);
    }
    assert.equal((await explain('b')).slice(0, 1), [`1. a  cached (run ${last})`]);
  }),
);

test(
  'upstream artifacts: the same output after a rerun of a keeps b cached (--reuse); a different output of u makes v run',
  withTimeout(30_000, async () => {
    const again = await run('a');
    assert.ok(ran(again, 'a'), 'the named workflow runs');
    const reused = await run('b', '--reuse');
    await assertReused(reused, 'a', again.name);
    await assertReused(reused, 'b', last);

    const first = await run('v');
    const u2 = await run('u');
    assert.ok(ran(first, 'u') && ran(u2, 'u'));
    assert.equal(await explain('v', '--reuse'), [`1. u  cached (run ${u2.name})`, '2. v  runs', '   why:      dep u changed']);
    const v2 = await run('v', '--reuse');
    await assertReused(v2, 'u', u2.name);
    assert.ok(ran(v2, 'v'), 'u wrote something else: v runs');
  }),
);

test(
  '--rerun runs everything, --explain says so; --json gives the causes as data',
  withTimeout(30_000, async () => {
    assert.equal(await explain('b', '--rerun'), ['1. a  runs', '   why:      --rerun', '2. b  runs', '   why:      --rerun']);
    const r = await run('b', '--rerun');
    assert.ok(ran(r, 'a') && ran(r, 'b'));

    await appendFile(join(p.dir, 'a.sh'), 'echo a-v3\n');
    const json = JSON.parse((await p.run(['run', 'b', '--dry-run', '--explain', '--json'])).stdout) as {
      jobs: { workflow: string; action: string; causes: { kind: string; text: string; path?: string; change?: string }[] }[];
    };
    assert.equal(json.jobs.map((j) => [j.workflow, j.action]), [['a', 'run'], ['b', 'run']]);
    assert.equal(json.jobs[0]!.causes, [{ kind: 'file', path: 'a.sh', change: 'changed', text: 'file a.sh changed' }]);
    assert.equal(json.jobs[1]!.causes, [{ kind: 'after', workflows: ['a'], text: 'runs after a (its inputs change)' }]);

    // A dry run never pulls: an absent image is said to be pulled later.
    assert.equal(await explain('absent'), ['1. absent  runs', '   why:      image dstack-test/absent-e2e:none not present locally; it will be pulled']);

    const bad = await p.run(['run', 'b', '--explain']);
    assert.is(bad.exitCode, 2);
    assert.ok(bad.stderr.includes('--explain goes with --dry-run'), bad.stderr);
  }),
);

test(
  'after rm of the run that made an artifact, a reuse names the run that still holds it, never the removed one',
  withTimeout(60_000, async () => {
    const q = await createProject({ workflows: `workflows:\n${aThenB(BASE)}` });
    try {
      const first = runNameOf((await q.run(['run', 'b'])).stderr);
      const second = await q.run(['run', 'b']);
      assert.ok(second.stderr.includes(`  a: cached (same inputs as ${first}/a)\n`), second.stderr);
      const secondName = runNameOf(second.stderr);
      const rm = await q.run(['rm', first, '-y']);
      assert.is(rm.exitCode, 0, rm.stderr);

      const plan = await q.run(['run', 'b', '--dry-run']);
      assert.ok(plan.stdout.startsWith(`1. a  cached (run ${secondName})\n`), plan.stdout);
      const third = await q.run(['run', 'b']);
      assert.is(third.exitCode, 0, third.stderr);
      assert.ok(third.stderr.includes(`  a: cached (same inputs as ${secondName}/a)\n`), third.stderr);
      assert.not.ok(third.stderr.includes(first) || plan.stdout.includes(first), 'the removed run is named');
      assert.is(third.stdout, 'b-reads-content-from-a\n', "a's artifact is there for b");
    } finally {
      await q.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
