/**
 * The executor's lifecycle through a recording backend (the seam nektos/act tests its job executor
 * with): which stages run, in what order, and that teardown runs after success, failure, a graceful
 * stop and an abort. Real containers are exercised by the integration and e2e suites.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { emptyManifest, type Manifest } from '../../src/artifacts/types.js';
import type { Backend, ExitInfo, JobContext, Machine, MachineLoss, RunningJob } from '../../src/engine/backend.js';
import { RunControl } from '../../src/engine/control.js';
import { DstackError } from '../../src/engine/errors.js';
import type { RunEvent } from '../../src/engine/events.js';
import { executeRun } from '../../src/engine/executor.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { Store } from '../../src/engine/store/types.js';
import { asContentHash, secretMarker, type JobSpec } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';
import { jobSpec } from '../helpers/spec.js';
import { until } from '../helpers/wait.js';

interface Script {
  /** Exit code per workflow (default 0). */
  exit?: Record<string, number>;
  /** Workflows whose bootstrap throws this error. */
  bootstrapError?: Record<string, DstackError>;
  /** Workflows that run until stopped or killed. */
  hang?: Set<string>;
  /** Image digest per image name (default `sha256:<image>`). */
  digest?: Record<string, string>;
  /** Images whose digest cannot be had: this error. */
  digestError?: Record<string, DstackError>;
  /** What collect saves, per workflow (default: nothing). */
  outputs?: Record<string, Manifest>;
  /** Workflows whose provision records a handle `{ job }`, then throws this error. */
  provisionError?: Record<string, DstackError>;
  /** Workflows whose teardown throws. */
  teardownFails?: Set<string>;
  /** Workflows whose machine the backend loses mid-job, with this cause. */
  lost?: Record<string, MachineLoss>;
  /** Only this many of a workflow's machines are lost (default: every one). */
  lostTimes?: Record<string, number>;
}

function recordingBackend(script: Script, steps: string[]): Backend {
  const losses = new Map<string, number>();
  return {
    id: 'test',
    supports: () => ({ ok: true }),
    check: async () => undefined,
    observe: async () => ({ state: 'gone' }),
    reap: async (handle) => void steps.push(`reap(${String(handle.job)})`),
    close: async () => undefined,
    imageDigest: async (spec) => {
      const failed = script.digestError?.[spec.image];
      if (failed) throw failed;
      return script.digest?.[spec.image] ?? `sha256:${spec.image}`;
    },
    provision: async (ctx: JobContext): Promise<Machine> => {
      const wf = ctx.spec.workflow;
      steps.push(`${wf}:provision`);
      const failed = script.provisionError?.[wf];
      if (failed) {
        ctx.recordHandle({ job: ctx.job });
        throw failed;
      }
      return {
        bootstrap: async (c) => {
          steps.push(`${wf}:bootstrap`);
          c.recordHandle({ job: c.job });
          pins.push(`${wf}:${c.imageDigest}`);
          const err = script.bootstrapError?.[wf];
          if (err) throw err;
        },
        stage: async (_c, input) => void steps.push(`${wf}:stage(${input.deps.length} deps)`),
        start: async (_c, env, logs): Promise<RunningJob> => {
          steps.push(`${wf}:start`);
          logs('stdout', Buffer.from(`hello from ${wf} ${env.TOKEN ?? ''}\n`));
          let finish!: (e: ExitInfo) => void;
          const ended = new Promise<ExitInfo>((r) => (finish = r));
          const lostSoFar = losses.get(wf) ?? 0;
          const loss = lostSoFar < (script.lostTimes?.[wf] ?? Infinity) ? script.lost?.[wf] : undefined;
          if (loss) losses.set(wf, lostSoFar + 1);
          if (loss) setImmediate(() => finish({ exitCode: 137, lost: loss, reason: loss === 'preempted' ? 'the spot instance was preempted' : 'lost connection to the host' }));
          else if (!script.hang?.has(wf)) setImmediate(() => finish({ exitCode: script.exit?.[wf] ?? 0 }));
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
        teardown: async () => {
          steps.push(`${wf}:teardown`);
          if (script.teardownFails?.has(wf)) throw new Error('the engine did not answer');
        },
      };
    },
  };
}

const spec = (workflow: string, env: Record<string, string> = {}): JobSpec => jobSpec({ workflow, image: 'img', env });

/** The image digest each bootstrap was told to run, as `workflow:digest`. */
const pins: string[] = [];

const SNAPSHOT = { manifest: emptyManifest, hash: asContentHash('0'.repeat(64)) };

async function setup(script: Script, jobs: { spec: JobSpec; deps: number[] }[], control = new RunControl()) {
  const home = mkdtempSync(join(tmpdir(), 'dstack-exec-'));
  const store = openStore(home);
  const steps: string[] = [];
  const events: RunEvent[] = [];
  const { run } = store.runs.createRun({ workflow: jobs.at(-1)!.spec.workflow, owner: 't', backend: 'test', repo: { root: home, isGit: false }, args: [], jobs });
  const run$ = executeRun({
    store,
    artifacts: new LocalArtifactStore({ home }),
    backend: recordingBackend(script, steps),
    run,
    jobs: store.runs.jobs(run.name),
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
    await until('a running', 4000, () => s.store.runs.jobs(s.run.name)[0]!.status === 'running', 2);
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
      const history = s.store.runs.jobs(s.run.name)[1]!.history.map((h) => h.status);
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
      const [a, b] = s.store.runs.jobs(s.run.name);
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
  'provider bash\'s default image that cannot be had is DS0043, naming image: and docker pull; a workflow\'s own image keeps DS0201',
  withTimeout(5000, async () => {
    const missing = new DstackError('DS0201', "image 'dstackai/miniforge:py3.11-0.2' is not available locally and could not be pulled (offline)");
    const s = await setup({ digestError: { 'dstackai/miniforge:py3.11-0.2': missing, own: missing } }, [
      { spec: jobSpec({ workflow: 'a', image: 'dstackai/miniforge:py3.11-0.2', defaultImage: true }), deps: [] },
      { spec: jobSpec({ workflow: 'b', image: 'own' }), deps: [] },
    ]);
    try {
      const [a, b] = (await s.run$).jobs;
      const e = a!.error as DstackError;
      assert.is(e.code, 'DS0043');
      assert.is(e.exitCode, 3);
      assert.is(e.message, `workflow \`a\` names no image, and its default, dstackai/miniforge:py3.11-0.2, is not available: ${missing.message}`);
      assert.is(e.hint, 'set `image:` in the workflow to an image you have (`docker images`), or pull the default: `docker pull dstackai/miniforge:py3.11-0.2`');
      assert.is(b!.error, missing);
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
      // What the failed bootstrap recorded is reaped after the teardown, in case the machine kept something.
      assert.equal(s.steps, ['a:provision', 'a:bootstrap', 'a:teardown', `reap(${s.run.name}/a)`]);
      assert.is(s.store.runs.jobs(s.run.name)[0]!.reason, "DS0201: image 'nope' is not available");
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
      const logged = [...s.store.logs.readLogs(s.run.name)].map((l) => l.data.toString()).join('');
      assert.is(logged, 'hello from a ***\n');
      const spec0 = JSON.stringify(s.store.runs.jobs(s.run.name)[0]!.spec);
      assert.not.ok(spec0.includes('tok-secret-1'));
    } finally {
      s.done();
    }
  }),
);

test(
  'a provision that fails after recording its handle: the handle is reaped before the job ends, and no teardown is asked of a machine that never came',
  withTimeout(5000, async () => {
    const err = new DstackError('DS0215', 'the instance did not answer over SSH');
    const s = await setup({ provisionError: { a: err } }, [{ spec: spec('a'), deps: [] }]);
    try {
      const outcome = await s.run$;
      assert.is(outcome.jobs[0]!.error, err);
      assert.equal(s.steps, ['a:provision', `reap(${s.run.name}/a)`]);
      const [a] = s.store.runs.jobs(s.run.name);
      assert.is(a!.status, 'failed');
      assert.is(a!.reason, 'DS0215: the instance did not answer over SSH');
    } finally {
      s.done();
    }
  }),
);

test(
  'a machine whose teardown fails is reaped by its handle; a job that ran and was torn down is not',
  withTimeout(5000, async () => {
    const s = await setup({ bootstrapError: { a: new DstackError('DS0202', 'no GPU') }, teardownFails: new Set(['a']) }, [
      { spec: spec('a'), deps: [] },
      { spec: spec('b'), deps: [] },
    ]);
    try {
      await s.run$;
      const a = s.steps.filter((x) => x.startsWith('a:') || x.startsWith('reap'));
      assert.equal(a, ['a:provision', 'a:bootstrap', 'a:teardown', `reap(${s.run.name}/a)`]);
      assert.not.ok(s.steps.includes(`reap(${s.run.name}/b)`), 'a clean teardown needs no reap');
    } finally {
      s.done();
    }
  }),
);

test(
  'a preempted machine ends the job interrupted with its cause; a lost one failed; dependents do not run',
  withTimeout(5000, async () => {
    const s = await setup({ lost: { a: 'preempted', c: 'lost' } }, [
      { spec: spec('a'), deps: [] },
      { spec: spec('b'), deps: [0] },
      { spec: spec('c'), deps: [] },
    ]);
    try {
      const outcome = await s.run$;
      const [a, b, c] = s.store.runs.jobs(s.run.name);
      assert.equal([a!.status, a!.reason, a!.exitCode], ['interrupted', 'the spot instance was preempted', 137]);
      assert.equal([b!.status, b!.reason], ['aborted', 'not run: dependency a ended interrupted']);
      assert.equal([c!.status, c!.reason], ['failed', 'lost connection to the host']);
      assert.is(outcome.status, 'failed');
      assert.ok(s.steps.includes('a:teardown') && s.steps.includes('c:teardown'));
      assert.not.ok(s.steps.includes('a:collect'), 'nothing is collected from a machine that is gone');
    } finally {
      s.done();
    }
    const only = await setup({ lost: { a: 'preempted' } }, [{ spec: spec('a'), deps: [] }]);
    try {
      assert.is((await only.run$).status, 'interrupted');
    } finally {
      only.done();
    }
  }),
);

test(
  'retry: a preempted job runs again on a new machine while it has resubmissions left, then ends done or interrupted',
  withTimeout(5000, async () => {
    const retried = (n: number): JobSpec => ({ ...spec('a'), retry: n });
    const s = await setup({ lost: { a: 'preempted' }, lostTimes: { a: 2 } }, [{ spec: retried(2), deps: [] }]);
    try {
      assert.is((await s.run$).status, 'done');
      assert.equal(s.steps.filter((x) => x === 'a:provision' || x === 'a:teardown' || x === 'a:collect'), ['a:provision', 'a:teardown', 'a:provision', 'a:teardown', 'a:provision', 'a:collect', 'a:teardown']);
      const retries = s.events.filter((e) => e.type === 'job-retry');
      assert.equal(retries.map((e) => e.type === 'job-retry' && [e.attempt, e.of, e.reason]), [[1, 2, 'the spot instance was preempted'], [2, 2, 'the spot instance was preempted']]);
      const [a] = s.store.runs.jobs(s.run.name);
      assert.equal([a!.status, a!.exitCode], ['done', 0]);
    } finally {
      s.done();
    }
    const short = await setup({ lost: { a: 'preempted' }, lostTimes: { a: 2 } }, [{ spec: retried(1), deps: [] }]);
    try {
      assert.is((await short.run$).status, 'interrupted');
      assert.is(short.steps.filter((x) => x === 'a:provision').length, 2, 'one resubmission, then interrupted');
    } finally {
      short.done();
    }
    const lost = await setup({ lost: { a: 'lost' }, lostTimes: { a: 1 } }, [{ spec: retried(3), deps: [] }]);
    try {
      assert.is((await lost.run$).status, 'failed', 'a machine lost for another cause than preemption is no retry');
      assert.is(lost.steps.filter((x) => x === 'a:provision').length, 1);
    } finally {
      lost.done();
    }
  }),
);

test(
  'the machine is told the image digest the fingerprint was computed with',
  withTimeout(5000, async () => {
    pins.length = 0;
    const s = await setup({ digest: { img: 'sha256:pinned' } }, [{ spec: spec('a'), deps: [] }]);
    try {
      await s.run$;
      assert.equal(pins, ['a:sha256:pinned']);
      assert.is(s.store.runs.jobs(s.run.name)[0]!.fingerprintParts?.parts.image, 'sha256:pinned');
    } finally {
      s.done();
    }
  }),
);

/** One run of `jobs` in an existing store (for caching across runs). */
async function runIn(
  store: Store,
  home: string,
  script: Script,
  jobs: { spec: JobSpec; deps: number[] }[],
  cache?: { rerun?: boolean; reuse?: boolean },
  secrets: (name: string) => string | undefined = () => undefined,
) {
  const steps: string[] = [];
  const events: RunEvent[] = [];
  const { run } = store.runs.createRun({ workflow: jobs.at(-1)!.spec.workflow, owner: 't', backend: 'test', repo: { root: home, isGit: false }, args: [], jobs });
  const outcome = await executeRun({
    store,
    artifacts: new LocalArtifactStore({ home }),
    backend: recordingBackend(script, steps),
    run,
    jobs: store.runs.jobs(run.name),
    snapshot: SNAPSHOT,
    ...(cache ? { cache } : {}),
    secrets,
    control: new RunControl(),
    onEvent: (e) => events.push(e),
  });
  return { run, outcome, steps, events, jobs: store.runs.jobs(run.name) };
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
      assert.is(a2!.cachedFrom, `${first.run.name}/a`);
      assert.is(a2!.reason, undefined);
      assert.equal(a2!.manifest, out('1'));
      assert.equal(a2!.history.map((h) => h.status), ['submitted', 'done']);
      assert.ok(second.events.some((e) => e.type === 'job-reused' && e.from === `${first.run.name}/a`));
      assert.equal(second.steps.find((x) => x.startsWith('b:stage')), 'b:stage(1 deps)');

      // Reused from a reuse: still names the job that ran.
      const third = await runIn(store, home, script, dag, { reuse: true });
      assert.equal(third.steps, [], 'with --reuse nothing runs');
      assert.is(third.jobs[0]!.cachedFrom, `${first.run.name}/a`);
      assert.is(third.jobs[1]!.cachedFrom, `${second.run.name}/b`);

      // The run that really made a's artifacts removed: the next reuse names the record that holds them.
      store.runs.deleteRun(first.run.name);
      const fourth = await runIn(store, home, script, dag, { reuse: true });
      assert.equal(fourth.steps, [], 'the artifacts live on in the later records');
      assert.ok(fourth.events.some((e) => e.type === 'job-reused' && e.from === third.jobs[0]!.id), JSON.stringify(fourth.events));
      assert.not.ok(JSON.stringify(fourth.events).includes(first.run.name), 'no event names the removed run');

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

test(
  'secret values never reach a fingerprint: a dep run with one value is reused with another',
  withTimeout(10_000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-exec-'));
    const store = openStore(home);
    try {
      const dag = [
        { spec: spec('a', { TOKEN: secretMarker('TOKEN') }), deps: [] },
        { spec: { ...spec('b'), deps: [{ kind: 'workflow' as const, name: 'a', location: { file: 'f', line: 1, col: 1 } }] }, deps: [0] },
      ];
      const first = await runIn(store, home, {}, dag, undefined, () => 'value-one');
      const second = await runIn(store, home, {}, dag, undefined, () => 'value-two');
      assert.ok(first.steps.includes('a:start'));
      assert.not.ok(second.steps.includes('a:start'), 'a is reused although its secret changed');
      assert.is(second.jobs[0]!.fingerprint, first.jobs[0]!.fingerprint);
      const parts = JSON.stringify(first.jobs[0]!.fingerprintParts);
      for (const v of ['value-one', createHash('sha256').update('value-one').digest('hex')]) assert.not.ok(parts.includes(v), `${v} in the parts`);
    } finally {
      store.close();
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test.run();
