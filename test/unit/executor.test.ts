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
import { RunControl } from '../../src/engine/control.js';
import { DstackError } from '../../src/engine/errors.js';
import type { RunEvent } from '../../src/engine/events.js';
import { executeRun } from '../../src/engine/executor.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import { type JobSpec } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';
import { jobSpec } from '../helpers/spec.js';
import { until } from '../helpers/wait.js';
import { recordingBackend, SNAPSHOT, spec, type Script } from '../helpers/recording-backend.js';

/** The image digest each bootstrap was told to run, as `workflow:digest`. */
const pins: string[] = [];

async function setup(script: Script, jobs: { spec: JobSpec; deps: number[] }[], control = new RunControl()) {
  const home = mkdtempSync(join(tmpdir(), 'dstack-exec-'));
  const store = openStore(home);
  const steps: string[] = [];
  const events: RunEvent[] = [];
  const { run } = store.runs.createRun({ workflow: jobs.at(-1)!.spec.workflow, owner: 't', backend: 'test', repo: { root: home, isGit: false }, args: [], jobs });
  const run$ = executeRun({
    store,
    artifacts: new LocalArtifactStore({ home }),
    backend: recordingBackend(script, steps, pins),
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

test.run();
