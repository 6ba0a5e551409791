/**
 * The run store contract: one SQLite database in the dstack home (`store.db`), WAL, safe under several
 * dstack processes at once. Implementation: ./sqlite.ts.
 */
import type { Manifest } from '../objects.js';
import type { BackendHandle } from '../backend.js';
import type { ContentHash, Fingerprint, FingerprintParts, JobId, JobSpec, JobStatus, RepoInfo, RunName } from '../types.js';

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
  readonly handle?: BackendHandle;
  readonly manifest?: Manifest;
  readonly fingerprint?: Fingerprint;
  readonly fingerprintParts?: FingerprintParts;
  readonly submittedAt: number;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  /** Every status change with its time, oldest first. */
  readonly history: readonly { readonly status: JobStatus; readonly at: number }[];
}

/** A `done` job whose fingerprint matched: the artifacts to reuse and who made them. */
export interface CacheHit {
  readonly id: JobId;
  readonly manifest: Manifest;
  /** `cached: <job id>` when the hit was itself a reuse. */
  readonly reason?: string;
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
  appendLog(job: JobId, stream: 'stdout' | 'stderr', data: Buffer, at?: number): void;
  /** Log records of a run (all its jobs, ordered by time then seq), optionally since a time or after per-job seqs. */
  readLogs(run: string, options?: { readonly sinceMs?: number; readonly after?: ReadonlyMap<JobId, number> }): readonly LogRecord[];
  deleteRun(name: string): void;

  // Caching (issue 3)
  setJobFingerprint(id: JobId, fingerprint: Fingerprint, parts: FingerprintParts): void;
  /** The newest `done` job with this fingerprint, from any run: the fingerprint covers every input. */
  findCachedJob(fingerprint: Fingerprint): JobRecord | undefined;
  /**
   * The same job as `findCachedJob`, only what reusing it needs: one indexed read, no status
   * history and no spec. (A 1,000-job cached plan asks 1,000 times: the full record cost ~80 ms.)
   */
  findCacheHit(fingerprint: Fingerprint): CacheHit | undefined;
  /** The newest job of `workflow` in `repoRoot` that has a fingerprint (whatever its status), for `--explain`. */
  lastFingerprintedJob(workflow: string, repoRoot: string): JobRecord | undefined;
  setRunSnapshot(name: RunName, snapshot: ContentHash): void;
  /** Hashes still valid for these files (same dev, ino, size and mtime), keyed `${dev}:${ino}`. */
  getFileHashes(keys: readonly StatKey[]): Map<string, ContentHash>;
  putFileHashes(entries: readonly (StatKey & { readonly hash: ContentHash })[]): void;

  // Tags (issue 3)
  /** Adds a tag; a name already taken is a DstackError unless `replace`. */
  putTag(tag: TagRecord, options?: { readonly replace?: boolean }): void;
  getTag(name: string): TagRecord | undefined;
  listTags(): readonly TagRecord[];
  deleteTag(name: string): boolean;
  /** Shows the tag in `ps` (the TAG column). */
  setRunTag(name: RunName, tag: string | undefined): void;

  // Prune (issue 3)
  /** Finished runs submitted before `before` (ms since epoch) that no tag was taken from. */
  listPrunableRuns(before: number): readonly RunRecord[];
  /**
   * Every object hash a record points at directly: files of job and tag manifests, run snapshot
   * manifests and input listings. The last two are objects that list further objects: whoever
   * collects garbage must read them and keep what they list too.
   */
  referencedObjects(): Set<ContentHash>;

  /**
   * The object `hash` turned out missing or damaged: every `done` job whose manifest refers to it
   * stops being a cache hit (its fingerprint is cleared), so the next run re-runs the job that made
   * it instead of failing on it forever. Returns how many jobs that was.
   */
  forgetCacheHitsWith(hash: ContentHash): number;

  close(): void;
}
