/**
 * Runs the jobs of one run on a backend: each job waits for its deps, takes one of a bounded number
 * of slots, and is decided just in time — its fingerprint needs its deps' results, so it is made
 * when they are done: image digest → inputs → fingerprint. A dep whose fingerprint matches an
 * earlier `done` job is reused (no machine at all); anything else goes through provision →
 * bootstrap → stage → start → wait → collect, on the image its fingerprint was computed with, with
 * teardown always last — after success, failure, a graceful stop and an abort alike — and a reap
 * of whatever a failed provision recorded. A machine the backend lost ends the job `failed`, or
 * `interrupted` when the cloud preempted it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import type { ArtifactStore, Manifest } from './objects.js';
import type { Backend, BackendHandle, ExitInfo, JobContext, Machine } from './backend.js';
import type { ControlMode, RunControl } from './control.js';
import { diskError } from './disk-errors.js';
import { DstackError, isDstackError } from './errors.js';
import type { RunEvent } from './events.js';
import { DEFAULT_LOG_LIMIT, startLogged, type LoggedStart } from './job-log.js';
import { containerSecrets, type ContainerSecrets, type SecretSource } from './secrets.js';
import { decide, depsInOrder } from './job-decision.js';
import { aggregateStatus } from './store/status.js';
import type { RemoteCache } from './remote-cache.js';
import type { CacheIndex, FingerprintClaims, JobRecord, LogStore, RunRecord, RunRecords, TagReader, TagRecord } from './store/types.js';
import { isFinal, type ContentHash, type Fingerprint, type JobId, type JobStatus } from './types.js';

/** The code snapshot as stored: its manifest, and the object that holds it. */
export interface StoredSnapshot {
  readonly manifest: Manifest;
  readonly hash: ContentHash;
}

/** The stores a run is executed against. */
export interface ExecutorStore {
  readonly runs: RunRecords;
  readonly logs: LogStore;
  readonly cache: CacheIndex;
  readonly tags: TagReader;
  /** Shares a fingerprint being produced with other processes (single-flight.ts); without it, every run produces its own. */
  readonly claims?: FingerprintClaims;
}

export interface ExecuteOptions {
  readonly store: ExecutorStore;
  readonly artifacts: ArtifactStore;
  readonly backend: Backend;
  readonly run: RunRecord;
  /** In topological order, as the store returned them. Jobs already `done` are not run again. */
  readonly jobs: readonly JobRecord[];
  readonly snapshot: StoredSnapshot;
  /**
   * `rerun`: reuse nothing. `reuse`: the named workflow (the run's own) may be reused too; without
   * it, it always runs.
   */
  readonly cache?: { readonly rerun?: boolean; readonly reuse?: boolean };
  readonly secrets: SecretSource;
  readonly control: RunControl;
  readonly onEvent: (event: RunEvent) => void;
  /** How many jobs run at once (default 2). */
  readonly parallelism?: number;
  /** The team's records, looked up after the local index misses (remote-cache.ts). */
  readonly remoteCache?: RemoteCache;
  /** Deps on other repositories, resolved through the team bucket (plan.ts `externalKey`). */
  readonly external?: ReadonlyMap<string, TagRecord>;
  /** Seconds between SIGTERM and SIGKILL on a graceful stop (default 10). */
  readonly graceSeconds?: number;
  /** Bytes of output stored per job (default DEFAULT_LOG_LIMIT); the terminal still sees all of it. */
  readonly logLimit?: number;
}

export interface JobOutcome {
  readonly job: JobId;
  readonly workflow: string;
  readonly status: JobStatus;
  readonly manifest?: Manifest;
  readonly fingerprint?: Fingerprint;
  /** The error that ended the job, when one did (image missing, engine gone). */
  readonly error?: DstackError;
}

export interface RunOutcome {
  readonly status: JobStatus;
  readonly jobs: readonly JobOutcome[];
}

/** Teardown and reaping get their own time, independent of whatever cancelled the job. */
const CLEANUP_TIMEOUT_MS = 60_000;

export async function executeRun(options: ExecuteOptions): Promise<RunOutcome> {
  const { jobs, control } = options;
  const limit = pLimit(Math.max(1, options.parallelism ?? 2));
  const outcomes = new Map<JobId, Promise<JobOutcome>>();
  const byId = new Map(jobs.map((j) => [j.id, j] as const));

  for (const job of jobs) {
    outcomes.set(
      job.id,
      (async (): Promise<JobOutcome> => {
        if (job.status === 'done') return { job: job.id, workflow: job.workflow, status: 'done', manifest: job.manifest, fingerprint: job.fingerprint };
        const deps = await Promise.all(job.deps.map((d) => outcomes.get(d) ?? Promise.resolve(missingDep(d, byId))));
        const blocked = deps.find((d) => d.status !== 'done');
        if (blocked) {
          return endWithout(options, job, 'aborted', `not run: dependency ${blocked.workflow} ended ${blocked.status}`);
        }
        return limit(() => {
          if (control.mode !== 'running') return endWithout(options, job, control.mode === 'stopping' ? 'stopped' : 'aborted', 'not started: the run was stopped');
          return runJob(options, job, deps);
        });
      })(),
    );
  }
  const results = await Promise.all(jobs.map((j) => outcomes.get(j.id)!));
  const status = settle(options, results);
  options.onEvent({ type: 'run-finished', run: options.run.name, status });
  return { status, jobs: results };
}

/**
 * The run's status once every job ended. A final status the store could not take when the job
 * ended (a full disk) is recorded again now that every job's folder is gone and its space free;
 * if the store still cannot take it, the outcomes speak for the run and the next `ps` reconciles it.
 */
function settle(o: ExecuteOptions, results: readonly JobOutcome[]): JobStatus {
  try {
    for (const r of results) {
      if (isFinal(o.store.runs.getJob(r.job)?.status ?? 'done')) continue;
      const error = r.error;
      o.store.runs.setJobStatus(r.job, r.status, error ? { reason: `${error.code}: ${error.message}`, errorCode: error.code } : {});
    }
    return o.store.runs.getRun(o.run.name)?.status ?? aggregateStatus(results.map((r) => r.status));
  } catch {
    return aggregateStatus(results.map((r) => r.status));
  }
}

function missingDep(id: JobId, byId: ReadonlyMap<JobId, JobRecord>): JobOutcome {
  return { job: id, workflow: byId.get(id)?.workflow ?? id, status: 'failed' };
}

function setStatus(o: ExecuteOptions, job: JobRecord, status: JobStatus, extra: { exitCode?: number; reason?: string; error?: DstackError } = {}): void {
  const { error, ...shown } = extra;
  if (o.store.runs.setJobStatus(job.id, status, { ...shown, ...(error && { errorCode: error.code }) })) {
    o.onEvent({ type: 'job-status', job: job.id, workflow: job.workflow, status, ...shown });
  }
}

/** Ends a job whose error may be the store's own (a full disk): `settle` records it later if it cannot now. */
function endWithError(o: ExecuteOptions, job: JobRecord, status: JobStatus, reason: string, error?: DstackError): void {
  try {
    setStatus(o, job, status, { reason, ...(error && { error }) });
  } catch {
    o.onEvent({ type: 'job-status', job: job.id, workflow: job.workflow, status, reason });
  }
}

function endWithout(o: ExecuteOptions, job: JobRecord, status: JobStatus, reason: string): JobOutcome {
  setStatus(o, job, status, { reason });
  return { job: job.id, workflow: job.workflow, status };
}

/** What a job left to clean: the machine the executor got, the last handle the backend recorded, how far it got. */
interface Leftovers {
  machine?: Machine;
  handle?: BackendHandle;
  /** Provision and bootstrap both succeeded. */
  ready?: boolean;
  /** The job's output, closed (what masking held back let out) whatever happened. */
  log?: LoggedStart;
}

/** An interrupted job that has resubmissions left: it runs again on a new machine. */
interface Retry {
  readonly retry: string;
}

/**
 * A job, run again on a new machine each time its machine is preempted while it has resubmissions
 * left (`retry:`, `--retry N`); the machine it lost is cleaned up before the next is asked for.
 */
async function runJob(o: ExecuteOptions, job: JobRecord, deps: readonly JobOutcome[]): Promise<JobOutcome> {
  const retries = job.spec.retry ?? 0;
  for (let attempt = 1; ; attempt++) {
    const outcome = await attemptJob(o, job, deps, retries - attempt + 1);
    if (!('retry' in outcome)) return outcome;
    o.onEvent({ type: 'job-retry', job: job.id, workflow: job.workflow, attempt, of: retries, reason: outcome.retry });
  }
}

async function attemptJob(o: ExecuteOptions, job: JobRecord, deps: readonly JobOutcome[], retriesLeft: number): Promise<JobOutcome | Retry> {
  const left: Leftovers = {};
  let release: (() => void) | undefined;
  try {
    const depManifests = depsInOrder(o, job, deps);
    const decided = await decide(o, job, depManifests);
    if (decided.ended) return decided.ended;
    if (decided.stopped) return endWithout(o, job, decided.stopped, 'not started: the run was stopped');
    release = decided.release;
    // Secrets in the commands reach the shell through the env (argv cannot carry the marker).
    const runtime = containerSecrets(job.spec, o.secrets);
    const ctx = jobContext(o, job, runtime.spec, o.control.abortSignal, decided.imageDigest, left);
    return await runOnMachine(o, job, ctx, left, { runtime, fingerprint: decided.fingerprint, depManifests, retriesLeft });
  } catch (e) {
    return endOnError(o, job, e);
  } finally {
    // The job's status is recorded: whoever waits for its fingerprint may go on.
    release?.();
    await cleanUp(o, left);
  }
}

/** provision → bootstrap → stage → start → wait → collect; every step after the decision. */
async function runOnMachine(
  o: ExecuteOptions,
  job: JobRecord,
  ctx: JobContext,
  left: Leftovers,
  decided: { readonly runtime: ContainerSecrets; readonly fingerprint?: Fingerprint; readonly depManifests: ReturnType<typeof depsInOrder>; readonly retriesLeft: number },
): Promise<JobOutcome | Retry> {
  const { control } = o;
  setStatus(o, job, 'provisioning');
  const machine = (left.machine = await o.backend.provision(ctx));
  setStatus(o, job, 'downloading');
  await machine.bootstrap(ctx);
  left.ready = true;
  await machine.stage(ctx, { snapshot: o.snapshot.manifest, repoRoot: o.run.repo.root, deps: decided.depManifests.map((d) => d.manifest), store: o.artifacts });
  if (modeOf(control) !== 'running') {
    const status = modeOf(control) === 'stopping' ? 'stopped' : 'aborted';
    setStatus(o, job, status, { reason: 'stopped before it started' });
    return outcomeOf(job, status);
  }
  const log = (left.log = await startLogged(
    {
      logs: o.store.logs,
      job: job.id,
      limit: o.logLimit ?? DEFAULT_LOG_LIMIT,
      secrets: decided.runtime.revealed,
      live: (stream, data) => o.onEvent({ type: 'job-log', job: job.id, workflow: job.workflow, stream, data }),
    },
    (write) => machine.start(ctx, decided.runtime.env, write),
  ));
  const { running } = log;
  setStatus(o, job, 'running');
  const follow = (mode: string): void => {
    if (mode === 'stopping') void running.stop(o.graceSeconds ?? 10).catch(() => undefined);
    else if (mode === 'aborting') void running.kill().catch(() => undefined);
  };
  const unsubscribe = control.onChange(follow);
  let exit: ExitInfo;
  try {
    follow(control.mode); // a stop that came while the container was starting
    exit = await running.wait();
  } finally {
    unsubscribe();
  }
  log.end();
  return ended(o, job, { machine, ctx, retriesLeft: decided.retriesLeft }, exit, decided.fingerprint);
}

/** The job's end from how its process ended and what the run was asked to do meanwhile. */
async function ended(
  o: ExecuteOptions,
  job: JobRecord,
  on: { readonly machine: Machine; readonly ctx: JobContext; readonly retriesLeft: number },
  exit: ExitInfo,
  fingerprint: Fingerprint | undefined,
): Promise<JobOutcome | Retry> {
  const mode = modeOf(o.control);
  if (mode === 'aborting') {
    setStatus(o, job, 'aborted', { exitCode: exit.exitCode, reason: 'aborted by user' });
    return outcomeOf(job, 'aborted');
  }
  if (mode === 'stopping') {
    setStatus(o, job, 'uploading');
    const manifest = await collect(o, job, on.machine, on.ctx);
    setStatus(o, job, 'stopped', { exitCode: exit.exitCode, reason: 'stopped by user' });
    return outcomeOf(job, 'stopped', { manifest, fingerprint });
  }
  // A spot instance taken back is nobody's fault: the job did not fail, it was interrupted.
  if (exit.lost === 'preempted') {
    const reason = exit.reason ?? 'the machine was preempted';
    // Not final: the job is provisioned again (its history keeps the interruption's reason).
    if (on.retriesLeft > 0) {
      setStatus(o, job, 'provisioning', { reason: `interrupted: ${reason}; running again on a new machine` });
      return { retry: reason };
    }
    setStatus(o, job, 'interrupted', { exitCode: exit.exitCode, reason });
    return outcomeOf(job, 'interrupted');
  }
  if (exit.exitCode !== 0 || exit.lost) {
    const reason = exit.error ? `${exit.error.code}: ${exit.error.message}` : (exit.reason ?? `exited with code ${exit.exitCode}`);
    setStatus(o, job, 'failed', { exitCode: exit.exitCode, reason });
    return outcomeOf(job, 'failed', exit.error ? { error: exit.error } : {});
  }
  setStatus(o, job, 'uploading');
  const manifest = await collect(o, job, on.machine, on.ctx);
  setStatus(o, job, 'done', { exitCode: 0 });
  return outcomeOf(job, 'done', { manifest, fingerprint });
}

function endOnError(o: ExecuteOptions, job: JobRecord, e: unknown): JobOutcome {
  if (o.control.mode === 'aborting') {
    endWithError(o, job, 'aborted', 'aborted by user');
    return outcomeOf(job, 'aborted');
  }
  // A full disk (artifacts, logs, the database) is the machine's state, not a bug: coded, exit 3.
  const error = isDstackError(e) ? e : diskError(e);
  const reason = error ? `${error.code}: ${error.message}` : `internal error: ${e instanceof Error ? e.message : String(e)}`;
  const status = o.control.mode === 'stopping' ? 'stopped' : 'failed';
  endWithError(o, job, status, reason, error);
  if (!error) throw e;
  return outcomeOf(job, status, { error });
}

/**
 * A machine the executor got is torn down, whatever happened; what a failed `provision` or
 * `bootstrap` recorded (an instance launched, then lost) is reaped by its handle too, as is a
 * machine whose teardown failed. Each in a time of its own, independent of whatever cancelled the
 * job.
 */
async function cleanUp(o: ExecuteOptions, left: Leftovers): Promise<void> {
  left.log?.close();
  const tornDown = left.machine ? await within(CLEANUP_TIMEOUT_MS, left.machine.teardown()) : false;
  if (left.handle && (!tornDown || !left.ready)) await within(CLEANUP_TIMEOUT_MS, o.backend.reap(left.handle));
}

/** Settles `work` within `ms`: true when it succeeded in time; false when it failed or took longer. */
async function within(ms: number, work: Promise<unknown>): Promise<boolean> {
  const timer = new AbortController();
  try {
    await Promise.race([work, sleep(ms, undefined, { signal: timer.signal, ref: false }).then(() => Promise.reject(new Error(`timed out after ${ms} ms`)))]);
    return true;
  } catch {
    return false;
  } finally {
    timer.abort();
  }
}

const outcomeOf = (job: JobRecord, status: JobStatus, extra: Partial<JobOutcome> = {}): JobOutcome => ({ job: job.id, workflow: job.workflow, status, ...extra });

/**
 * What a backend gets to know about the job it works on, and how it reports back. Handles go to
 * the store and are remembered in `left`, for the clean-up after a failed provision.
 */
function jobContext(o: ExecuteOptions, job: JobRecord, spec: JobRecord['spec'], signal: AbortSignal, imageDigest: string, left?: Leftovers): JobContext {
  return {
    run: o.run.name,
    job: job.id,
    spec,
    imageDigest,
    signal,
    notify: (notice) => {
      // Kept, so `ps` and `logs` can show where a detached run's app is reached.
      if (notice.kind === 'port') o.store.runs.addJobPort(job.id, { port: notice.containerPort, url: notice.url });
      o.onEvent({ type: 'job-notice', job: job.id, workflow: job.workflow, notice });
    },
    recordHandle: (handle) => {
      if (left) left.handle = handle;
      o.store.runs.setJobHandle(job.id, handle);
    },
  };
}

async function collect(o: ExecuteOptions, job: JobRecord, machine: Machine, jobCtx: JobContext): Promise<Manifest> {
  // Collecting runs after a graceful stop too: it gets a signal of its own that nothing aborts.
  const ctx: JobContext = { ...jobCtx, signal: new AbortController().signal };
  const manifest = await machine.collect(ctx, job.spec.artifacts, o.artifacts);
  o.store.runs.setJobManifest(job.id, manifest);
  const files = manifest.entries.filter((e) => e.type === 'file').length;
  o.onEvent({ type: 'artifacts-saved', job: job.id, workflow: job.workflow, files, bytes: manifest.size });
  return manifest;
}

/** Read through a function so the compiler does not narrow a mode that changes under awaits. */
const modeOf = (control: RunControl): ControlMode => control.mode;
