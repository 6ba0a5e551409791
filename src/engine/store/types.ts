/**
 * The run store contract: one SQLite database in the dstack home (`store.db`), WAL, safe under several
 * dstack processes at once. Implementation: ./sqlite.ts.
 */
import type { Manifest } from '../../artifacts/types.js';
import type { BackendHandle } from '../backend.js';
import type { JobId, JobSpec, JobStatus, RepoInfo, RunName } from '../types.js';

export interface RunRecord {
  readonly name: RunName;
  /** The workflow that was named on the command line. */
  readonly workflow: string;
  readonly owner: string;
  /** `local`, `ssh:NAME`, `aws`, `gcp`. */
  readonly backend: string;
  readonly repo: RepoInfo;
  readonly args: readonly string[];
  readonly tag?: string;
  /** Aggregate of the jobs' statuses (see `aggregateStatus`). */
  readonly status: JobStatus;
  /** ms since epoch. */
  readonly submittedAt: number;
  readonly finishedAt?: number;
  /** The process supervising the run (the CLI, or its detached supervisor) and its host. */
  readonly pid?: number;
  readonly hostname?: string;
}

export interface JobRecord {
  readonly id: JobId;
  readonly run: RunName;
  readonly workflow: string;
  /** Order within the run (topological). */
  readonly index: number;
  readonly spec: JobSpec;
  /** Jobs of the same run this one waits for. */
  readonly deps: readonly JobId[];
  readonly status: JobStatus;
  readonly exitCode?: number;
  /** Why it ended the way it did, when not by itself ("stopped by user", "container gone"). */
  readonly reason?: string;
  readonly handle?: BackendHandle;
  readonly manifest?: Manifest;
  readonly submittedAt: number;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  /** Every status change with its time, oldest first. */
  readonly history: readonly { readonly status: JobStatus; readonly at: number }[];
}

export interface NewRun {
  /** A name from `reserveName()`; when absent, createRun allocates one. */
  readonly name?: RunName;
  readonly workflow: string;
  readonly owner: string;
  readonly backend: string;
  readonly repo: RepoInfo;
  readonly args: readonly string[];
  readonly tag?: string;
  readonly pid?: number;
  readonly hostname?: string;
  /** In topological order; `deps` are indexes into this list. */
  readonly jobs: readonly { readonly spec: JobSpec; readonly deps: readonly number[] }[];
}

export interface LogRecord {
  /** Increasing per job; `logs -f` polls for seq > last seen. */
  readonly seq: number;
  readonly job: JobId;
  readonly workflow: string;
  readonly stream: 'stdout' | 'stderr';
  /** ms since epoch. */
  readonly at: number;
  readonly data: Buffer;
}

export interface StatusUpdate {
  readonly exitCode?: number;
  readonly reason?: string;
}

export interface RunStore {
  /**
   * Allocates a run name unique in this home (`wet-mangust-1`) without creating the run, so jobs can
   * be resolved with `${{ run.name }}` before they are recorded. The name is never handed out again.
   */
  reserveName(): RunName;
  /** Creates the run and its jobs in one transaction, allocating a name unique in this home. */
  createRun(run: NewRun): { readonly run: RunRecord; readonly jobs: readonly JobRecord[] };
  getRun(name: string): RunRecord | undefined;
  /**
   * Newest first (by submission time). With `all`: every run, or the newest `limit` if given.
   * Without (plain `dstack ps`): the newest `limit` runs (default 20) whatever their status, then
   * every older run that is still active, so nothing running is ever hidden. Reads through indexes.
   */
  listRuns(options?: { readonly all?: boolean; readonly limit?: number }): readonly RunRecord[];
  jobs(run: string): readonly JobRecord[];
  getJob(id: JobId): JobRecord | undefined;
  /**
   * Records a status change (and its time) and the run's aggregate status in one transaction; sets
   * `startedAt` on `running`, `finishedAt` on a final status. A final status is never changed again,
   * and an unknown job is not an error: both return false and change nothing.
   */
  setJobStatus(id: JobId, status: JobStatus, update?: StatusUpdate): boolean;
  setJobHandle(id: JobId, handle: BackendHandle | undefined): void;
  setJobManifest(id: JobId, manifest: Manifest): void;
  /** Sets the process supervising the run (a detached supervisor takes over from the CLI). */
  setRunOwnerProcess(name: RunName, pid: number, hostname: string): void;
  /** The newest job of `workflow` that ended `done`, for `workflow:` deps in this repo root. */
  latestSuccessfulJob(workflow: string, repoRoot: string): JobRecord | undefined;
  appendLog(job: JobId, stream: 'stdout' | 'stderr', data: Buffer, at?: number): void;
  /** Log records of a run (all its jobs, ordered by time then seq), optionally since a time or after per-job seqs. */
  readLogs(run: string, options?: { readonly sinceMs?: number; readonly after?: ReadonlyMap<JobId, number> }): readonly LogRecord[];
  deleteRun(name: string): void;
  close(): void;
}
