/**
 * The backend contract. A backend plugin is a plain object; the built-in ones are a static list
 * (src/backends/index.ts). The engine drives every backend through the same stages:
 *
 *   supports → check → provision → bootstrap → stage → start → (wait | stop | kill) → collect → teardown
 *
 * Local Docker implements them in-process; the SSH pool, AWS and GCP run the same stages against a
 * machine reached over SSH (provisioning being a lease for the pool, an instance for a cloud:
 * src/backends/ssh-host/instance-backend.ts). One contract suite
 * (test/integration/backend-contract.ts) is registered against every implementation.
 *
 * The lifecycle rules every backend can rely on, and must keep:
 *
 * - `supports` is asked for every job of a run before `check`, and `check` before anything is
 *   provisioned: what a backend cannot do, and missing credentials, fail the run before anything
 *   costs money (preflight.ts).
 * - A backend records a handle (`JobContext.recordHandle`) as soon as something exists that a later
 *   process must find — before waiting for anything. When `provision` or `bootstrap` throws after
 *   a handle was recorded, the executor passes that handle to `reap` (with a time of its own)
 *   before the job ends; a machine the executor received is torn down (`teardown`) whatever
 *   happens, and reaped by handle when its teardown fails.
 * - The image that runs is the one the job's fingerprint was computed with
 *   (`JobContext.imageDigest`), or the job fails: never another image silently.
 * - A machine lost mid-job ends the job with a cause (`ExitInfo.lost`): `preempted` (the cloud took
 *   a spot instance back) ends it `interrupted`, anything else `failed`.
 */
import type { ArtifactStore, Manifest } from './objects.js';
import type { ArtifactSpec, JobSpec, JobStatus, RunName, JobId } from './types.js';
import type { SecretSource } from './secrets.js';
import type { DstackError } from './errors.js';
import type * as t from 'typanion';

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
  /**
   * The identity of the image the job's fingerprint was computed with (`Backend.imageDigest`'s
   * answer). The machine runs exactly this image, or fails with DS0214 — a pool whose hosts hold
   * different images under one name must never fingerprint one and run another. Absent: whatever
   * `spec.image` names on the machine.
   */
  readonly imageDigest?: string;
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

/**
 * Why a backend lost a job's machine. `preempted`: the cloud took it back (a spot instance) — the
 * job ends `interrupted`, nothing in it was wrong. `lost`: the machine died, or the connection to
 * it did — the job ends `failed`.
 */
export type MachineLoss = 'preempted' | 'lost';

export interface ExitInfo {
  /** Undefined when nobody can tell (the machine or its engine was lost before the exit was seen). */
  readonly exitCode?: number;
  /** Set when the job did not end by itself: the backend's view of why (OOM-killed, host lost, preempted). */
  readonly reason?: string;
  /** Set when the backend lost the job's machine, with the cause. */
  readonly lost?: MachineLoss;
  /**
   * The loss as a coded error (the Docker engine frozen or gone: DS0060, DS0061), which the run
   * reports and exits with, as with an error before the job started.
   */
  readonly error?: DstackError;
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
  /**
   * Pure and cheap (no network): can this backend run this job at all? Asked for every job of a run
   * before `check`; a refusal carries a reason a person can act on ("no GPU instance type offers 8
   * A100s in eu-west-1"), shown with DS0213.
   */
  supports(spec: JobSpec): Capability;
  /**
   * Credentials and connectivity, after `supports` and before anything is provisioned (nothing that
   * costs money). Throws a DstackError (exit 3) that says how to fix it.
   */
  check(signal: AbortSignal): Promise<void>;
  /**
   * The content identity of the job's image as this backend will run it (the local engine's image
   * id, a registry digest), pulling the image first when it is missing (with 'pull-progress'
   * notices). Part of the job's fingerprint, so it is asked before anything is provisioned.
   * A missing image that cannot be had is DS0201.
   */
  imageDigest(spec: JobSpec, options: ImageDigestOptions): Promise<string>;
  /**
   * Gets a machine for the job: a slot on a host for the pool, an instance for a cloud (recording
   * its handle as soon as the cloud names it), next to nothing for local. When it throws after
   * recording a handle, the executor reaps that handle.
   */
  provision(ctx: JobContext): Promise<Machine>;
  /** Looks a recorded handle up, for reconciling runs whose CLI died. */
  observe(handle: BackendHandle): Promise<ObservedState>;
  /**
   * Removes whatever a recorded handle names — any handle this backend recorded, at any stage (a
   * half-provisioned instance, a job folder without a container yet). Idempotent.
   */
  reap(handle: BackendHandle): Promise<void>;
  /**
   * Optional — backends whose machines cost money (a cloud's instances): what this dstack home has
   * there now, as the cloud sees it, so also machines no record names (a dstack killed between the
   * cloud's answer and the record). `sweepMachines` (sweep.ts) ends those no live run holds.
   */
  owned?(): Promise<readonly OwnedMachine[]>;
  /**
   * Optional — what this dstack home left on the backend that costs nothing but room (a local
   * engine's containers by their `dstack.home` label, job folders on disk), also what no record
   * names (a dstack killed between the engine's answer and the record). `sweepLeftovers`
   * (sweep.ts) removes those no live run holds.
   */
  leftovers?(): Promise<readonly OwnedMachine[]>;
  /**
   * Optional — backends that choose a machine per job: the machines it would try for this job, in
   * the order it would try them (cheapest first), for `--dry-run`. Rejects (coded) when none fits.
   */
  offers?(spec: JobSpec, signal: AbortSignal): Promise<readonly MachineOffer[]>;
  /** Releases connections; the CLI calls it before exit. */
  close(): Promise<void>;
}

/** One kind of machine a backend can run a job on, and what it costs. */
export interface MachineOffer {
  /** `g4dn.xlarge`. */
  readonly type: string;
  readonly market: 'spot' | 'on-demand';
  readonly vcpus: number;
  readonly memoryMiB: number;
  /** `1x T4 (16 GiB)`, or undefined for none. */
  readonly gpus?: string;
  /** USD per hour. */
  readonly pricePerHour: number;
  /** The price is an estimate (another region's figure). */
  readonly estimate: boolean;
}

/** A machine this dstack home has in a backend that charges for it. */
export interface OwnedMachine {
  /** What `reap` takes. */
  readonly handle: BackendHandle;
  /** The cloud's name for it (`i-0abc…`). */
  readonly id: string;
  /** As the cloud says: `pending`, `running`. */
  readonly state: string;
  /** The job it was launched for, from the cloud's tags. */
  readonly job?: string;
  /**
   * The run it belongs to, when the backend can tell that but not the job exactly (a job folder's
   * name): a live run keeps it.
   */
  readonly run?: string;
  /** A few words for listings (`t3a.large, us-east-1a, up 12 min`). */
  readonly detail?: string;
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

/**
 * A remote as saved in the dstack home's config.json: its name (`--remote NAME`), its plugin's kind,
 * and the fields the plugin's `configSchema` checks.
 */
export interface RemoteConfig {
  readonly name: string;
  readonly kind: string;
}

/**
 * A backend plugin: what the engine needs of one. Its CLI half (`dstack config <kind>`, the columns
 * of `dstack config list`) is src/backends/plugin.ts, so the engine never loads clipanion.
 */
export interface BackendPlugin<C extends RemoteConfig = RemoteConfig> {
  /** `local`, `ssh`, `aws`, `gcp`: the `kind` of its remotes, and the part before `:` of a backend id. */
  readonly kind: string;
  /** What it runs jobs on, in a few words (`your own machines over SSH`). */
  readonly describe: string;
  /** Its machines cost money while they exist (a cloud's instances): its backends have `owned()`. */
  readonly ownsMachines?: boolean;
  /**
   * Loads the check of a saved remote of this kind (a typanion validator), so a hand-edited
   * config.json fails with DS0210 naming the field. Loaded only when config.json is read: a local
   * run never pays for it. Absent: the plugin has no remotes (`local`).
   */
  readonly configSchema?: () => Promise<t.StrictValidator<unknown, C>>;
  /** Cheap: no network, no SDK import (a cloud's SDK loads on first use). */
  open(options: BackendOpenOptions<C>): Backend;
}

export interface BackendOpenOptions<C extends RemoteConfig = RemoteConfig> {
  /** The dstack home (for job folders, caches, keys). */
  readonly home: string;
  /**
   * The remote this backend runs on, as saved in config.json and checked by the plugin's schema
   * (loaded before `open`, so even `supports` can read it); absent for a plugin without remotes.
   */
  readonly remote?: C;
  /**
   * Knobs no user configuration carries, for tests (container labels to sweep by, a known_hosts
   * file of their own, shorter timeouts). Each plugin documents the ones it reads.
   */
  readonly settings?: Readonly<Record<string, unknown>>;
}

export type { JobStatus };
