/**
 * What the run store keeps, as plain readonly data: runs, their jobs, log records, tags, and the
 * file-hash cache's keys. The stores that keep them are in ./types.ts.
 */
import type { Manifest } from '../objects.js';
import type { BackendHandle } from '../backend.js';
import type { ErrorCode } from '../errors.js';
import type { ContentHash, Fingerprint, FingerprintParts, JobId, JobSpec, JobStatus, RepoInfo, RunName } from '../types.js';

export interface RunRecord {
  readonly name: RunName;
  /** The workflow that was named on the command line. */
  readonly workflow: string;
  readonly owner: string;
  /** `local`, `ssh:NAME`, `aws`, `gcp`. */
  readonly backend: string;
  /** `repo.root` is the project the run belongs to (`dstack ps` shows the current one's). */
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
  /** The object (in the artifact store) holding the code snapshot's manifest. */
  readonly snapshot?: ContentHash;
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
  /** The code of the error that ended it (disk full, image missing): it decides the exit status. */
  readonly errorCode?: ErrorCode;
  /** A reuse: the job whose artifacts it took (the one that really ran, as recorded then). */
  readonly cachedFrom?: JobId;
  readonly handle?: BackendHandle;
  /** Where its published ports are reached (while it runs), in the order they were published. */
  readonly ports?: readonly JobPort[];
  readonly manifest?: Manifest;
  readonly fingerprint?: Fingerprint;
  readonly fingerprintParts?: FingerprintParts;
  readonly submittedAt: number;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  /** Every status change with its time, oldest first. */
  readonly history: readonly { readonly status: JobStatus; readonly at: number }[];
}

/** A published port of a job and the URL it is reached at. */
export interface JobPort {
  readonly port: number;
  readonly url: string;
}

/** A job producing a fingerprint right now, and the process that runs it. */
export interface Claim {
  readonly fingerprint: Fingerprint;
  readonly job: JobId;
  readonly run: RunName;
  readonly pid: number;
  readonly hostname: string;
  /** ms since epoch. */
  readonly claimedAt: number;
}

/**
 * A `done` job whose fingerprint matched: the artifacts to reuse, the record that holds them, and
 * the job that really made them — or, when that job's run was removed since, the holder itself, so
 * a message never names a run that no longer exists.
 */
export interface CacheHit {
  /** The record the manifest is read from. */
  readonly job: JobId;
  readonly manifest: Manifest;
  readonly origin: { readonly job: JobId; readonly run: RunName };
}

/** The last fingerprinted job of a workflow, for `--explain` to say what changed since. */
export interface FingerprintedJob {
  readonly id: JobId;
  readonly status: JobStatus;
  readonly fingerprint: Fingerprint;
  readonly parts: FingerprintParts;
  /** Its spec's `inputs:` (undefined: the whole snapshot). */
  readonly inputs?: readonly string[];
}

/** What a run is submitted with: its record's own fields before any job ran. */
export interface NewRun extends Pick<RunRecord, 'workflow' | 'owner' | 'backend' | 'repo' | 'args' | 'tag' | 'pid' | 'hostname'> {
  /** A name from `reserveName()`; when absent, createRun allocates one. */
  readonly name?: RunName;
  /** In topological order; `deps` are indexes into this list. */
  readonly jobs: readonly { readonly spec: JobSpec; readonly deps: readonly number[] }[];
}

export type LogStream = 'stdout' | 'stderr';

export interface LogRecord {
  /** Increasing per job; `logs -f` reads for seq > last seen. */
  readonly seq: number;
  readonly job: JobId;
  readonly workflow: string;
  readonly stream: LogStream;
  /** ms since epoch. */
  readonly at: number;
  readonly data: Buffer;
}

/** A log record of a run made elsewhere, for `importRun` (given in order: seqs are numbered as they come). */
export interface ImportedLog {
  readonly job: JobId;
  readonly stream: LogStream;
  readonly at: number;
  readonly data: Buffer;
}

/** What identifies a file's content without reading it: if all four match, the hash still holds. */
export interface StatKey {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  /** Modification time in nanoseconds (`fs.stat(p, { bigint: true }).mtimeNs`, as a number). */
  readonly mtimeNs: number;
}

export interface TagRecord {
  readonly name: string;
  /** The run it was taken from; undefined for a tag of local folders. */
  readonly run?: RunName;
  readonly manifest: Manifest;
  readonly createdAt: number;
}

export interface StatusUpdate {
  readonly exitCode?: number;
  readonly reason?: string;
  readonly errorCode?: ErrorCode;
}

/** Which runs a listing covers: one project's (its root folder), or every project's. */
export type ProjectScope = { readonly project: string } | { readonly project?: undefined };
