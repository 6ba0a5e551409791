/**
 * A reader that goes away (`| head -1`), end to end through a real shell pipeline: the writing
 * stops, never the run. The run goes on to its end and is recorded truthfully, its artifacts are
 * saved, nothing is left behind, and the CLI exits with the run's status and no trace.
 *
 * The job prints one line, then waits for a file the test creates once `head` has printed that
 * line, then prints far more than a pipe holds: every later write meets the closed pipe, whatever
 * the timing.
 */
import { existsSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BIN, assertNoContainersLeft, assertNoCrash, containersOf, createProject, sleep, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const LINES = 100_000; // about 590 kB: many times what a pipe holds

const WORKFLOWS = `workflows:
  - name: talk
    image: ${IMAGE}
    commands:
      - echo first
      - while [ ! -e go ]; do sleep 0.05; done
      - seq 1 ${LINES}
      - mkdir -p output && echo kept > output/kept.txt
    artifacts: [./output]
`;

interface Piped {
  /** What `head -1` printed. */
  readonly stdout: string;
  /** dstack's stderr (unless redirected into the pipe). */
  readonly stderr: string;
  /** dstack's own exit status (bash's PIPESTATUS[0]). */
  readonly exitCode: number;
}

/**
 * `dstack ARGS | head -1` in bash. `redirect` goes between the command and the pipe (`2>&1`).
 * `onFirstLine` runs once head has printed its line (head has then exited or is about to).
 */
async function pipeToHead(p: Project, args: string, options: { redirect?: string; onFirstLine?: (line: string) => Promise<void> } = {}): Promise<Piped> {
  const script = `"${process.execPath}" "${BIN}" ${args} ${options.redirect ?? ''} | head -1; echo "dstack-exit=\${PIPESTATUS[0]}" >&2`;
  const child = execa('bash', ['-c', script], { cwd: p.dir, env: p.env, extendEnv: false, reject: false, timeout: 90_000, stdin: 'ignore' });
  let out = '';
  let fired: Promise<void> | undefined;
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString('utf8');
    if (!fired && out.includes('\n') && options.onFirstLine) fired = options.onFirstLine(out.split('\n')[0]!);
  });
  const r = await child;
  await fired;
  const stderr = String(r.stderr ?? '');
  const m = /dstack-exit=(\d+)\n?$/.exec(stderr);
  if (!m) throw new Error(`no exit status from bash:\n${stderr}`);
  return { stdout: out, stderr: stderr.slice(0, m.index), exitCode: Number(m[1]) };
}

/** Lets the job go on: creates `go` in its folder (the one under the home's jobs/), once there. */
async function release(p: Project): Promise<void> {
  const jobs = join(p.home, 'jobs');
  for (const deadline = Date.now() + 30_000; ; await sleep(50)) {
    const dirs = existsSync(jobs) ? readdirSync(jobs) : [];
    if (dirs.length === 1 && existsSync(join(jobs, dirs[0]!, 'workflow'))) {
      await writeFile(join(jobs, dirs[0]!, 'workflow', 'go'), '');
      return;
    }
    if (Date.now() > deadline) throw new Error(`no job folder appeared under ${jobs}`);
  }
}

/** The run went on to its end: done, artifacts saved, the whole log kept, nothing left behind. */
async function assertRanToTheEnd(p: Project, name: string): Promise<void> {
  const run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
  assert.is(run.status, 'done');
  assert.equal(
    run.jobs.map((j) => [j.status, j.exitCode, j.artifacts]),
    [['done', 0, ['output/kept.txt']]],
  );
  const logs = await p.run(['logs', name]);
  assert.ok(logs.stdout.startsWith('first\n1\n2\n'), logs.stdout.slice(0, 100));
  assert.ok(logs.stdout.endsWith(`\n${LINES}\n`), logs.stdout.slice(-100));
  assert.equal(readdirSync(join(p.home, 'jobs')), [], 'job folders left');
  assert.equal(await containersOf(p.home), []);
}

test(
  'run | head -1: the run goes on to done, artifacts saved, exit 0 with no trace, nothing left',
  withTimeout(90_000, async () => {
    const p = await createProject({ workflows: WORKFLOWS });
    try {
      const r = await pipeToHead(p, 'run talk', { onFirstLine: () => release(p) });
      assert.is(r.stdout, 'first\n');
      assert.is(r.exitCode, 0, r.stderr);
      assertNoCrash({ ...r });
      const name = /^Run (\S+): talk\n/.exec(r.stderr)?.[1] ?? '';
      assert.ok(name, r.stderr);
      // The messages on stderr (still open) are all there, in order.
      assert.match(r.stderr, new RegExp(`^Run ${name}: talk\\n  talk: running\\n  talk: saved 1 artifact file \\(5 B\\)\\n  talk: done in [0-9.]+ s\\nRun ${name} done\\n$`));
      await assertRanToTheEnd(p, name);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'run 2>&1 | head -1: stdout and stderr both closed, the run still ends done and is recorded so',
  withTimeout(90_000, async () => {
    const p = await createProject({ workflows: WORKFLOWS });
    try {
      const r = await pipeToHead(p, 'run talk', { redirect: '2>&1', onFirstLine: () => release(p) });
      const name = /^Run (\S+): talk\n$/.exec(r.stdout)?.[1] ?? '';
      assert.ok(name, r.stdout);
      assert.is(r.exitCode, 0);
      assert.is(r.stderr, '', 'nothing else reached the terminal');
      await assertRanToTheEnd(p, name);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'logs RUN | head -1 and logs -f | head -1 on a long log: exit 0, quietly, at once',
  withTimeout(90_000, async () => {
    const p = await createProject({ workflows: WORKFLOWS });
    try {
      const bg = p.start(['run', 'talk']);
      await release(p);
      const done = await bg.result;
      assert.is(done.exitCode, 0, done.stderr);
      const name = /^Run (\S+): talk\n/.exec(done.stderr)?.[1] ?? '';
      for (const args of [`logs ${name}`, `logs ${name} -f`]) {
        const r = await pipeToHead(p, args);
        assert.is(r.stdout, 'first\n', args);
        assert.is(r.stderr, '', args);
        assert.is(r.exitCode, 0, args);
      }
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
