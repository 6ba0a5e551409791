/**
 * The lifecycle cases of the backend contract (backend-contract.ts), for machines that cost money:
 * driven through the real executor with a run store of their own, against the backend under test.
 *
 * - A provision that fails right after recording its handle: the fault is injected at the seam —
 *   the handle is recorded (the store has it), then recording throws — so every backend fails at
 *   the same point of its own provision. The executor must reap that handle before the job ends,
 *   and the backend's reap must leave nothing.
 * - A machine lost mid-job (the subject's `loseMachine`): the job ends `interrupted` when the cloud
 *   preempted it, `failed` otherwise, with the cause as its reason.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Manifest } from '../../src/artifacts/types.js';
import type { Backend, BackendHandle, JobContext } from '../../src/engine/backend.js';
import { RunControl } from '../../src/engine/control.js';
import { DstackError } from '../../src/engine/errors.js';
import type { RunEvent } from '../../src/engine/events.js';
import { executeRun, type RunOutcome } from '../../src/engine/executor.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { JobRecord, Store } from '../../src/engine/store/types.js';
import { asContentHash, type JobSpec } from '../../src/engine/types.js';
import { until } from '../helpers/wait.js';
import type { ContractSubject } from './backend-contract.js';

interface Suite {
  readonly subject: () => ContractSubject;
  readonly limit: (fn: () => Promise<void>) => () => Promise<void>;
  readonly spec: (script: string | undefined, overrides?: Partial<JobSpec>) => JobSpec;
  readonly snapshot: () => Manifest;
  readonly project: () => string;
}

interface Started {
  readonly store: Store;
  readonly job: () => JobRecord;
  readonly outcome: Promise<RunOutcome>;
  readonly events: RunEvent[];
  readonly close: () => Promise<void>;
}

/** One run of one job through the executor on `backend`, in a store of its own. */
async function startRun(suite: Suite, backend: Backend, spec: JobSpec): Promise<Started> {
  const home = await mkdtemp(join(tmpdir(), 'dstack-lifecycle-'));
  const store = openStore(home);
  const { run } = store.runs.createRun({ workflow: spec.workflow, owner: 'contract', backend: backend.id, repo: { root: suite.project(), isGit: false }, args: [], jobs: [{ spec, deps: [] }] });
  const events: RunEvent[] = [];
  const outcome = executeRun({
    store,
    artifacts: suite.subject().store,
    backend,
    run,
    jobs: store.runs.jobs(run.name),
    snapshot: { manifest: suite.snapshot(), hash: asContentHash('0'.repeat(64)) },
    secrets: () => undefined,
    control: new RunControl(),
    onEvent: (e) => events.push(e),
  });
  outcome.catch(() => undefined);
  return {
    store,
    job: () => store.runs.jobs(run.name)[0]!,
    outcome,
    events,
    close: async () => {
      store.close();
      await rm(home, { recursive: true, force: true });
    },
  };
}

/** The backend, with a provision whose first recorded handle is followed by a failure, and reaps counted. */
function failingAfterHandle(backend: Backend): { readonly backend: Backend; readonly reaped: BackendHandle[] } {
  const reaped: BackendHandle[] = [];
  const wrapped: Backend = {
    id: backend.id,
    supports: (spec) => backend.supports(spec),
    check: (signal) => backend.check(signal),
    imageDigest: (spec, options) => backend.imageDigest(spec, options),
    observe: (handle) => backend.observe(handle),
    close: async () => undefined,
    reap: async (handle) => {
      reaped.push(handle);
      await backend.reap(handle);
    },
    provision: (ctx) => {
      let failed = false;
      const faulty: JobContext = {
        ...ctx,
        recordHandle: (handle) => {
          ctx.recordHandle(handle);
          if (failed) return;
          failed = true;
          throw new DstackError('DS0300', 'injected: recording failed right after the handle was written');
        },
      };
      return backend.provision(faulty);
    },
  };
  return { backend: wrapped, reaped };
}

export function registerLifecycleCases(test: Test, suite: Suite): void {
  test(
    'a provision that fails after recording its handle: the job fails, the handle is reaped before it ends, nothing is left',
    suite.limit(async () => {
      const { backend } = suite.subject();
      const faulty = failingAfterHandle(backend);
      const run = await startRun(suite, faulty.backend, suite.spec('echo never'));
      try {
        const outcome = await run.outcome;
        const job = run.job();
        assert.is(outcome.status, 'failed');
        assert.is(job.status, 'failed');
        assert.is(job.reason, 'DS0300: injected: recording failed right after the handle was written');
        assert.ok(job.handle, 'the handle was recorded');
        assert.equal(faulty.reaped, [job.handle], 'the recorded handle was reaped, once');
        assert.equal(await backend.observe(job.handle!), { state: 'gone' });
        assert.not.ok(run.events.some((e) => e.type === 'job-log'), 'the job never ran');
      } finally {
        await run.close();
      }
    }),
  );

  test(
    'a machine lost mid-job ends the job with its cause: interrupted when preempted, failed otherwise',
    suite.limit(async () => {
      const { backend } = suite.subject();
      const run = await startRun(suite, backend, suite.spec('echo started; sleep 1000'));
      let restore: (() => Promise<void>) | undefined;
      try {
        await until('the job to run', 45_000, () => run.events.some((e) => e.type === 'job-log' && e.data.toString().includes('started')));
        const handle = run.job().handle;
        assert.ok(handle, 'a running job has a handle');
        const loss = await suite.subject().loseMachine(handle);
        restore = loss.restore;
        const outcome = await run.outcome;
        const job = run.job();
        assert.is(job.status, loss.status, job.reason);
        assert.match(job.reason ?? '', loss.reason, `reason: ${job.reason}`);
        assert.is(outcome.status, loss.status);
        await restore?.();
        restore = undefined;
        // What a later dstack does with the record: nothing runs it, and its reap leaves nothing.
        await backend.reap(job.handle!);
        assert.equal(await backend.observe(job.handle!), { state: 'gone' });
      } finally {
        await restore?.();
        await run.close();
      }
    }),
  );
}
