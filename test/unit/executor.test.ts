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
import { emptyManifest } from '../../src/artifacts/types.js';
import type { Backend, ExitInfo, JobContext, Machine, RunningJob } from '../../src/engine/backend.js';
import { RunControl } from '../../src/engine/control.js';
import { DstackError } from '../../src/engine/errors.js';
import type { RunEvent } from '../../src/engine/events.js';
import { executeRun } from '../../src/engine/executor.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { JobSpec } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';

interface Script {
  /** Exit code per workflow (default 0). */
  exit?: Record<string, number>;
  /** Workflows whose bootstrap throws this error. */
  bootstrapError?: Record<string, DstackError>;
  /** Workflows that run until stopped or killed. */
  hang?: Set<string>;
}

function recordingBackend(script: Script, steps: string[]): Backend {
  return {
    id: 'test',
    supports: () => ({ ok: true }),
    check: async () => undefined,
    observe: async () => ({ state: 'gone' }),
    reap: async () => undefined,
    close: async () => undefined,
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
          return emptyManifest;
        },
        teardown: async () => void steps.push(`${wf}:teardown`),
      };
    },
  };
}

const spec = (workflow: string, env: Record<string, string> = {}): JobSpec => ({
  workflow,
  provider: 'bash',
  image: 'img',
  env,
  workingDir: '',
  ports: 0,
  artifacts: [],
  cache: [],
  resources: {},
  variables: {},
  args: [],
  deps: [],
});

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
    snapshot: { root: home, files: [], repo: { root: home, isGit: false } },
    secrets: (n) => (n === 'TOKEN' ? 'tok-secret-1' : undefined),
    control,
    onEvent: (e) => events.push(e),
  });
  return { home, store, steps, events, run, run$, control, done: () => (store.close(), rmSync(home, { recursive: true, force: true })) };
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
  withTimeout(5000, async () => {
    const s = await setup({ hang: new Set(['a']) }, [{ spec: spec('a'), deps: [] }]);
    try {
      while (!s.steps.includes('a:start')) await new Promise((r) => setTimeout(r, 2));
      await new Promise((r) => setTimeout(r, 5));
      s.control.interrupt();
      const outcome = await s.run$;
      assert.is(outcome.status, 'stopped');
      assert.equal(s.steps.slice(-3), ['a:stop', 'a:collect', 'a:teardown']);
    } finally {
      s.done();
    }
  }),
);

test(
  'a second interrupt aborts: the container is killed, nothing is saved, teardown still runs',
  withTimeout(5000, async () => {
    const s = await setup({ hang: new Set(['a']) }, [{ spec: spec('a'), deps: [] }]);
    try {
      while (!s.steps.includes('a:start')) await new Promise((r) => setTimeout(r, 2));
      await new Promise((r) => setTimeout(r, 5));
      s.control.abort();
      const outcome = await s.run$;
      assert.is(outcome.status, 'aborted');
      assert.ok(s.steps.includes('a:kill'));
      assert.not.ok(s.steps.includes('a:collect'));
      assert.is(s.steps.at(-1), 'a:teardown');
    } finally {
      s.done();
    }
  }),
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

test.run();
