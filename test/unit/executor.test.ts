/**
 * The executor's lifecycle through a recording backend (the seam nektos/act tests its job executor
 * with): which stages run, in what order, and that teardown runs after success, failure, a graceful
 * stop and an abort. Real containers are exercised by the integration and e2e suites.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { emptyManifest, type Manifest } from '../../src/artifacts/types.js';
import type { Backend, ExitInfo, JobContext, Machine, RunningJob } from '../../src/engine/backend.js';
import { RunControl } from '../../src/engine/control.js';
import { DstackError } from '../../src/engine/errors.js';
import type { RunEvent } from '../../src/engine/events.js';
import { executeRun } from '../../src/engine/executor.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { RunStore } from '../../src/engine/store/types.js';
import { asContentHash, type JobSpec } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';
import { jobSpec } from '../helpers/spec.js';

interface Script {
  /** Exit code per workflow (default 0). */
  exit?: Record<string, number>;
  /** Workflows whose bootstrap throws this error. */
  bootstrapError?: Record<string, DstackError>;
  /** Workflows that run until stopped or killed. */
  hang?: Set<string>;
  /** Image digest per image name (default `sha256:<image>`). */
  digest?: Record<string, string>;
  /** What collect saves, per workflow (default: nothing). */
  outputs?: Record<string, Manifest>;
}

function recordingBackend(script: Script, steps: string[]): Backend {
  return {
    id: 'test',
    supports: () => ({ ok: true }),
    check: async () => undefined,
    observe: async () => ({ state: 'gone' }),
    reap: async () => undefined,
    close: async () => undefined,
    imageDigest: async (spec) => script.digest?.[spec.image] ?? `sha256:${spec.image}`,
    provision: async (ctx: JobContext): Promise<Machine> => {
      const wf = ctx.spec.workflow;
      steps.push(`${wf}:provision`);
      return {
        bootstrap: async () => {
          steps.push(`${wf}:bootstrap`);
          const err = script.bootstrapError?.[wf];
          if (err) throw err;
        },
        stage: async (_c, input) => void steps.push(`${wf}:stage(${input.deps.length} deps)`),
        start: async (_c, env, logs): Promise<RunningJob> => {
          steps.push(`${wf}:start`);
          logs('stdout', Buffer.from(`hello from ${wf} ${env.TOKEN ?? ''}\n`));
          let finish!: (e: ExitInfo) => void;
          const ended = new Promise<ExitInfo>((r) => (finish = r));
          if (!script.hang?.has(wf)) setTimeout(() => finish({ exitCode: script.exit?.[wf] ?? 0 }), 5);
          return {
            wait: () => ended,
            stop: async () => {
              steps.push(`${wf}:stop`);
              finish({ exitCode: 143 });
            },
            kill: async () => {
              steps.push(`${wf}:kill`);
              finish({ exitCode: 137 });
            },
          };
        },
        collect: async () => {
          steps.push(`${wf}:collect`);
          return script.outputs?.[wf] ?? emptyManifest;
        },
        teardown: async () => void steps.push(`${wf}:teardown`),
      };
    },
  };
}

const spec = (workflow: string, env: Record<string, string> = {}): JobSpec => jobSpec({ workflow, image: 'img', env });

const SNAPSHOT = { manifest: emptyManifest, hash: asContentHash('0'.repeat(64)) };

async function setup(script: Script, jobs: { spec: JobSpec; deps: number[] }[], control = new RunControl()) {
  const home = mkdtempSync(join(tmpdir(), 'dstack-exec-'));
  const store = openStore(home);
  const steps: string[] = [];
  const events: RunEvent[] = [];
  const { run } = store.createRun({ workflow: jobs.at(-1)!.spec.workflow, owner: 't', backend: 'test', repo: { root: home, isGit: false }, args: [], jobs });
  const run$ = executeRun({
    store,
    artifacts: new LocalArtifactStore({ home }),
    backend: recordingBackend(script, steps),
    run,
    jobs: store.jobs(run.name),
    snapshot: SNAPSHOT,
    secrets: (n) => (n === 'TOKEN' ? 'tok-secret-1' : undefined),
    control,
    onEvent: (e) => events.push(e),
  });
  return { home, store, steps, events, run, run$, control, done: () => (store.close(), rmSync(home, { recursive: true, force: true })) };
}

/** Runs `fn` on a run of one job, `a`, that hangs once started: from a moment after its start on, to its cleanup. */
async function withHangingJob(fn: (s: Awaited<ReturnType<typeof setup>>) => Promise<void>): Promise<void> {
  const s = await setup({ hang: new Set(['a']) }, [{ spec: spec('a'), deps: [] }]);
  try {
    while (!s.steps.includes('a:start')) await new Promise((r) => setTimeout(r, 2));
    await new Promise((r) => setTimeout(r, 5));
    await fn(s);
  } finally {
    s.done();
  }
}

test(
  'a dep runs before its dependent, each job ends with teardown, the run is done',
  withTimeout(5000, async () => {
    const s = await setup({}, [
      { spec: spec('a'), deps: [] },
      { spec: spec('b'), deps: [0] },
    ]);
    try {
      const outcome = await s.run$;
      assert.is(outcome.status, 'done');
      assert.equal(s.steps, [
        'a:provision', 'a:bootstrap', 'a:stage(0 deps)', 'a:start', 'a:collect', 'a:teardown',
        'b:provision', 'b:bootstrap', 'b:stage(1 deps)', 'b:start', 'b:collect', 'b:teardown',
      ]);
      const history = s.store.jobs(s.run.name)[1]!.history.map((h) => h.status);
      assert.equal(history, ['submitted', 'provisioning', 'downloading', 'running', 'uploading', 'done']);
    } finally {
      s.done();
    }
  }),
);

test(
  'a failing job is torn down, keeps its exit code, and its dependent never starts',
  withTimeout(5000, async () => {
    const s = await setup({ exit: { a: 7 } }, [
      { spec: spec('a'), deps: [] },
      { spec: spec('b'), deps: [0] },
    ]);
    try {
      const outcome = await s.run$;
      assert.is(outcome.status, 'failed');
      assert.equal(s.steps, ['a:provision', 'a:bootstrap', 'a:stage(0 deps)', 'a:start', 'a:teardown']);
      const [a, b] = s.store.jobs(s.run.name);
      assert.is(a!.status, 'failed');
      assert.is(a!.exitCode, 7);
      assert.is(b!.status, 'aborted');
      assert.is(b!.reason, 'not run: dependency a ended failed');
    } finally {
      s.done();
    }
  }),
);

test(
  'a backend error ends the job failed with its code, after teardown',
  withTimeout(5000, async () => {
    const err = new DstackError('DS0201', "image 'nope' is not available");
    const s = await setup({ bootstrapError: { a: err } }, [{ spec: spec('a'), deps: [] }]);
    try {
      const outcome = await s.run$;
      assert.is(outcome.jobs[0]!.error, err);
      assert.equal(s.steps, ['a:provision', 'a:bootstrap', 'a:teardown']);
      assert.is(s.store.jobs(s.run.name)[0]!.reason, "DS0201: image 'nope' is not available");
    } finally {
      s.done();
    }
  }),
);

test(
  'a graceful stop stops the container, saves artifacts, ends stopped, then tears down',
  withTimeout(5000, () =>
    withHangingJob(async (s) => {
      s.control.interrupt();
      const outcome = await s.run$;
      assert.is(outcome.status, 'stopped');
      assert.equal(s.steps.slice(-3), ['a:stop', 'a:collect', 'a:teardown']);
    }),
  ),
);

test(
  'a second interrupt aborts: the container is killed, nothing is saved, teardown still runs',
  withTimeout(5000, () =>
    withHangingJob(async (s) => {
      s.control.abort();
      const outcome = await s.run$;
      assert.is(outcome.status, 'aborted');
      assert.ok(s.steps.includes('a:kill'));
      assert.not.ok(s.steps.includes('a:collect'));
      assert.is(s.steps.at(-1), 'a:teardown');
    }),
  ),
);

test(
  'secrets reach the job env but are masked in stored logs',
  withTimeout(5000, async () => {
    const s = await setup({}, [{ spec: spec('a', { TOKEN: '\u0000secret:TOKEN\u0000' }), deps: [] }]);
    try {
      await s.run$;
      const logged = s.store.readLogs(s.run.name).map((l) => l.data.toString()).join('');
      assert.is(logged, 'hello from a ***\n');
      const spec0 = JSON.stringify(s.store.jobs(s.run.name)[0]!.spec);
      assert.not.ok(spec0.includes('tok-secret-1'));
    } finally {
      s.done();
    }
  }),
);

/** One run of `jobs` in an existing store (for caching across runs). */
async function runIn(store: RunStore, home: string, script: Script, jobs: { spec: JobSpec; deps: number[] }[], cache?: { rerun?: boolean; reuse?: boolean }) {
  const steps: string[] = [];
  const events: RunEvent[] = [];
  const { run } = store.createRun({ workflow: jobs.at(-1)!.spec.workflow, owner: 't', backend: 'test', repo: { root: home, isGit: false }, args: [], jobs });
  const outcome = await executeRun({
    store,
    artifacts: new LocalArtifactStore({ home }),
    backend: recordingBackend(script, steps),
    run,
    jobs: store.jobs(run.name),
    snapshot: SNAPSHOT,
    ...(cache ? { cache } : {}),
    secrets: () => undefined,
    control: new RunControl(),
    onEvent: (e) => events.push(e),
  });
  return { run, outcome, steps, events, jobs: store.jobs(run.name) };
}

const out = (content: string): Manifest => ({
  version: 1,
  entries: [{ type: 'file', path: 'out/x', size: 1, mode: 0o644, hash: asContentHash(content.repeat(64).slice(0, 64)) }],
  size: 1,
});

test(
  'caching: a dep with the same fingerprint is reused (no machine); the named workflow still runs; --reuse, --rerun',
  withTimeout(10_000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-exec-'));
    const store = openStore(home);
    try {
      const dag = [
        { spec: spec('a'), deps: [] },
        { spec: { ...spec('b'), deps: [{ kind: 'workflow' as const, name: 'a', location: { file: 'f', line: 1, col: 1 } }] }, deps: [0] },
      ];
      const script: Script = { outputs: { a: out('1') } };
      const first = await runIn(store, home, script, dag);
      assert.is(first.outcome.status, 'done');
      assert.ok(first.jobs.every((j) => j.fingerprint !== undefined && j.fingerprintParts?.version === 1));

      const second = await runIn(store, home, script, dag);
      assert.is(second.outcome.status, 'done');
      assert.not.ok(second.steps.some((s) => s.startsWith('a:')), `a got a machine: ${second.steps.join(' ')}`);
      assert.ok(second.steps.includes('b:start'), 'the named workflow runs');
      const [a2] = second.jobs;
      assert.is(a2!.status, 'done');
      assert.is(a2!.reason, `cached: ${first.run.name}/a`);
      assert.equal(a2!.manifest, out('1'));
      assert.equal(a2!.history.map((h) => h.status), ['submitted', 'done']);
      assert.ok(second.events.some((e) => e.type === 'job-reused' && e.from === `${first.run.name}/a`));
      assert.equal(second.steps.find((x) => x.startsWith('b:stage')), 'b:stage(1 deps)');

      // Reused from a reuse: still names the job that ran.
      const third = await runIn(store, home, script, dag, { reuse: true });
      assert.equal(third.steps, [], 'with --reuse nothing runs');
      assert.is(third.jobs[0]!.reason, `cached: ${first.run.name}/a`);
      assert.is(third.jobs[1]!.reason, `cached: ${second.run.name}/b`);

      const rerun = await runIn(store, home, script, dag, { rerun: true });
      assert.ok(rerun.steps.includes('a:start') && rerun.steps.includes('b:start'));
    } finally {
      store.close();
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'caching: a new image digest misses; a dep whose output changed makes its dependent miss, the same output hits',
  withTimeout(10_000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-exec-'));
    const store = openStore(home);
    try {
      const dep = { kind: 'workflow' as const, name: 'a', location: { file: 'f', line: 1, col: 1 } };
      const dag = [
        { spec: spec('a'), deps: [] },
        { spec: { ...spec('b'), deps: [dep] }, deps: [0] },
        { spec: { ...spec('c'), deps: [{ ...dep, name: 'b' }] }, deps: [1] },
      ];
      await runIn(store, home, { outputs: { a: out('1') } }, dag);
      const newImage = await runIn(store, home, { outputs: { a: out('1') }, digest: { img: 'sha256:other' } }, dag);
      assert.ok(newImage.steps.includes('a:start'), 'a new digest is a miss');

      // a runs again (named) and writes something else: b, which reads it, misses.
      await runIn(store, home, { outputs: { a: out('2') } }, [dag[0]!]);
      const changed = await runIn(store, home, { outputs: { a: out('2') } }, dag);
      assert.not.ok(changed.steps.some((s) => s.startsWith('a:')));
      assert.ok(changed.steps.includes('b:start'), 'b misses: its dep wrote something else');

      // a runs again and writes the same: b hits.
      await runIn(store, home, { outputs: { a: out('2') } }, [dag[0]!]);
      const same = await runIn(store, home, { outputs: { a: out('2') } }, dag);
      assert.equal(same.steps.filter((s) => s.endsWith(':start')), ['c:start']);
    } finally {
      store.close();
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test.run();
