/**
 * The backend contract. A backend plugin is a plain object; the built-in ones are a static list
 * (src/backends/index.ts). The engine drives every backend through the same stages:
 *
 *   supports → check → provision → bootstrap → stage → start → (wait | stop | kill) → collect → teardown
 *
 * Local Docker implements them in-process; the SSH pool, AWS and GCP run the same stages against a
 * machine reached over SSH (provisioning being a no-op for the pool). One contract suite
 * (test/integration/backend-contract.ts) is registered against every implementation.
 */
import type { ArtifactStore, Manifest } from './objects.js';
import type { ArtifactSpec, JobSpec, JobStatus, RunName, JobId } from './types.js';
import type { SecretSource } from './secrets.js';

/** What a backend can't do for a job, with a reason a person can act on. */
export type Capability = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/**
 * JSON that lets a later process find what a job left behind (a container id, a host and a
 * folder, an instance id). Recorded in the run store *before* the thing it names exists for long,
 * so a crash never loses track of it.
 */
export type BackendHandle = Readonly<Record<string, string | number | boolean | null>>;

/** Progress and notices a backend reports while it works; rendered by the CLI. */
export type BackendNotice =
  | { readonly kind: 'pull-progress'; readonly image: string; readonly current: number; readonly total: number }
  | { readonly kind: 'pull-done'; readonly image: string }
  | { readonly kind: 'port'; readonly containerPort: number; readonly url: string }
  | { readonly kind: 'info'; readonly message: string };

export interface JobContext {
  readonly run: RunName;
  readonly job: JobId;
  readonly spec: JobSpec;
  /** Cancelled when the job must stop at once (abort); graceful stops go through `RunningJob.stop`. */
  readonly signal: AbortSignal;
  readonly notify: (notice: BackendNotice) => void;
  /** Records the handle in the run store; backends call it as soon as there is something to find later. */
  readonly recordHandle: (handle: BackendHandle) => void;
  /**
   * Looks secrets up by name, for the few spec fields that a backend itself must read with secrets
   * in them (`registryAuth`). Absent: such fields keep their markers and the backend goes without.
   */
  readonly secrets?: SecretSource;
}

export interface StageInput {
  /**
   * The code snapshot as stored (files by content in `store`, symlinks kept): materialize it with
   * `materializeSnapshot` (src/artifacts/tree.ts), which keeps the code's own outward symlinks.
   */
  readonly snapshot: Manifest;
  /** The repository the code came from (absolute path), e.g. to key `cache:` folders. */
  readonly repoRoot: string;
  /** Deps' artifacts, in dependency order; later entries win on the same path. */
  readonly deps: readonly Manifest[];
  readonly store: ArtifactStore;
}

export interface LogSink {
  /** Called with raw chunks as they arrive, per stream. */
  (stream: 'stdout' | 'stderr', chunk: Buffer): void;
}

export interface ExitInfo {
  readonly exitCode: number;
  /** Set when the job did not end by itself: the backend's view of why (OOM-killed, host lost). */
  readonly reason?: string;
  /** True when the backend lost the job (machine gone, spot interruption): ends `interrupted`/`failed`. */
  readonly lost?: boolean;
}

export interface RunningJob {
  /** Resolves once the job's process has ended, whatever ended it. Never rejects for a non-zero exit. */
  wait(): Promise<ExitInfo>;
  /** SIGTERM, then SIGKILL after `graceSeconds`. Resolves when the process has ended. */
  stop(graceSeconds: number): Promise<void>;
  /** SIGKILL now. */
  kill(): Promise<void>;
}

/** The machine a job runs on, from provisioning to teardown. */
export interface Machine {
  /** Image present (pulled with progress if missing), GPUs usable when asked for. */
  bootstrap(ctx: JobContext): Promise<void>;
  /** Puts the code snapshot and the deps' artifacts where the job will see them at `/workflow`. */
  stage(ctx: JobContext, input: StageInput): Promise<void>;
  /**
   * Starts the job. `env` is the spec's env with secrets resolved: it must reach the process and
   * nothing else (no file, no log, no handle).
   */
  start(ctx: JobContext, env: Readonly<Record<string, string>>, logs: LogSink): Promise<RunningJob>;
  /** Saves the job's artifact paths into `store`; called after a normal end and after a graceful stop. */
  collect(ctx: JobContext, artifacts: readonly ArtifactSpec[], store: ArtifactStore): Promise<Manifest>;
  /** Removes everything the job left on the machine. Idempotent; runs after success, failure and abort. */
  teardown(): Promise<void>;
}

/** What is really there for a recorded handle, for a run whose supervising process is gone. */
export type ObservedState =
  | { readonly state: 'running' }
  | { readonly state: 'exited'; readonly exitCode: number }
  | { readonly state: 'gone' };

export interface Backend {
  /** Recorded on runs and shown by `ps`: `local`, `ssh:NAME`, `aws`, `gcp`. */
  readonly id: string;
  /** Pure: can this backend run this job at all? */
  supports(spec: JobSpec): Capability;
  /** Credentials and connectivity, before anything is provisioned. Throws a DstackError (exit 3) that says how to fix it. */
  check(signal: AbortSignal): Promise<void>;
  /**
   * The content identity of the job's image as this backend will run it (the local engine's image
   * id, a registry digest), pulling the image first when it is missing (with 'pull-progress'
   * notices). Part of the job's fingerprint, so it is asked before anything is provisioned.
   * A missing image that cannot be had is DS0201.
   */
  imageDigest(spec: JobSpec, options: ImageDigestOptions): Promise<string>;
  /** Gets a machine for the job (a no-op for local and for the pool). */
  provision(ctx: JobContext): Promise<Machine>;
  /** Looks a recorded handle up, for reconciling runs whose CLI died. */
  observe(handle: BackendHandle): Promise<ObservedState>;
  /** Removes whatever a recorded handle names. Idempotent. */
  reap(handle: BackendHandle): Promise<void>;
  /** Releases connections; the CLI calls it before exit. */
  close(): Promise<void>;
}

export interface ImageDigestOptions {
  readonly notify: (notice: BackendNotice) => void;
  readonly signal: AbortSignal;
  /** Resolves secret markers in `registry_auth`. */
  readonly secrets?: SecretSource;
  /**
   * false (`--dry-run`): never pull; an image that is not present is DS0201 at once, and nothing is
   * fetched. Default true.
   */
  readonly pull?: boolean;
}

export interface BackendPlugin {
  /** `local`, `ssh`, `aws`, `gcp`. */
  readonly name: string;
  /** Cheap: no network, no SDK import. `config` is the remote's saved configuration, if any. */
  open(options: BackendOpenOptions): Backend;
}

export interface BackendOpenOptions {
  /** The dstack home (for job folders, caches, keys). */
  readonly home: string;
  readonly config?: Readonly<Record<string, unknown>>;
}

export type { JobStatus };
