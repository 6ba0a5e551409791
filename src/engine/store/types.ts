/**
 * The run store, as focused stores over one database: runs and their jobs, logs, the cache index,
 * the file-hash stat cache, tags, and what prune asks. Each consumer takes only the ones it uses,
 * so a remote store (a team bucket) can implement those that make sense for it — runs, the cache
 * index, tags, logs — and leave the local-only ones (the stat cache, prune) out.
 * Implementation on SQLite: ./sqlite.ts.
 */
import type { Manifest } from '../objects.js';
import type { BackendHandle } from '../backend.js';
import type { ContentHash, Fingerprint, FingerprintParts, JobId, JobStatus, RunName } from '../types.js';
import type {
  CacheHit,
  Claim,
  FingerprintedJob,
  ImportedLog,
  JobPort,
  JobRecord,
  LogRecord,
  LogStream,
  NewRun,
  ProjectScope,
  RunRecord,
  StatKey,
  StatusUpdate,
  TagRecord,
} from './records.js';

export type * from './records.js';

/** Reading runs and jobs. */
export interface RunReader {
  getRun(name: string): RunRecord | undefined;
  /**
   * Newest first (by submission time), of one project or of all. With `all`: every run, or the
   * newest `limit` if given. Without (plain `dstack ps`): the newest `limit` runs (default 20)
   * whatever their status, then every older run that is still active, so nothing running is ever
   * hidden. Reads through indexes.
   */
  listRuns(options?: ProjectScope & { readonly all?: boolean; readonly limit?: number }): readonly RunRecord[];
  jobs(run: string): readonly JobRecord[];
  getJob(id: JobId): JobRecord | undefined;
}

/** Recording runs and what becomes of their jobs. */
export interface RunWriter {
  /**
   * Allocates a run name unique in this home (`wet-mangust-1`) without creating the run, so jobs can
   * be resolved with `${{ run.name }}` before they are recorded. The name is never handed out again.
   */
  reserveName(): RunName;
  /** Creates the run and its jobs in one transaction, allocating a name unique in this home. */
  createRun(run: NewRun): { readonly run: RunRecord; readonly jobs: readonly JobRecord[] };
  /**
   * Records a status change (and its time) and the run's aggregate status in one transaction; sets
   * `startedAt` on `running`, `finishedAt` on a final status. A final status is never changed again,
   * and an unknown job is not an error: both return false and change nothing.
   */
  setJobStatus(id: JobId, status: JobStatus, update?: StatusUpdate): boolean;
  /**
   * Ends the job `done` with the hit's artifacts, recording where they came from, in one
   * transaction. False, changing nothing, when the job is already final or unknown.
   */
  recordReuse(id: JobId, hit: CacheHit): boolean;
  setJobHandle(id: JobId, handle: BackendHandle | undefined): void;
  /** Records where a published port of the job is reached (`ps` and `logs` show it, also for a detached run). */
  addJobPort(id: JobId, port: JobPort): void;
  setJobManifest(id: JobId, manifest: Manifest): void;
  /** Sets the process supervising the run (a detached supervisor takes over from the CLI). */
  setRunOwnerProcess(name: RunName, pid: number, hostname: string): void;
  setRunSnapshot(name: RunName, snapshot: ContentHash): void;
  /** Deletes the run with its jobs, their status history and logs. */
  deleteRun(name: string): void;
}

export interface RunRecords extends RunReader, RunWriter {}

/** Job output, kept per job in arrival order. */
export interface LogStore {
  /** Appends one chunk; returns its seq (increasing per job). */
  appendLog(job: JobId, stream: LogStream, data: Buffer, at?: number): number;
  /** Deletes a job's records with `from <= seq <= to` (a capped log dropping the oldest of its tail). */
  dropLogs(job: JobId, from: number, to: number): void;
  /**
   * A run's records ordered by (time, job index, seq), read page by page, so a log of any size is
   * read in bounded memory. `sinceMs` keeps records at or after that time; `after` keeps, for the
   * jobs it names, only records with a greater seq (what `logs -f` polls with).
   */
  readLogs(run: string, options?: { readonly sinceMs?: number; readonly after?: ReadonlyMap<JobId, number> }): Iterable<LogRecord>;
}

/** Fingerprints of jobs, and finding a finished job with the same one. */
export interface CacheIndex {
  setJobFingerprint(id: JobId, fingerprint: Fingerprint, parts: FingerprintParts): void;
  /**
   * The newest `done` job with this fingerprint (other than `exclude`), from any run: the
   * fingerprint covers every input. One indexed read: a 1,000-job cached plan asks 1,000 times.
   */
  findCacheHit(fingerprint: Fingerprint, options?: { readonly exclude?: JobId }): CacheHit | undefined;
  /** The newest job of `workflow` in `repoRoot` that has a fingerprint (whatever its status), for `--explain`. */
  lastFingerprintedJob(workflow: string, repoRoot: string): FingerprintedJob | undefined;
  /**
   * The object `hash` turned out missing or damaged: every `done` job whose manifest refers to it
   * stops being a cache hit (its fingerprint is cleared), so the next run re-runs the job that made
   * it instead of failing on it forever. Returns how many jobs that was.
   */
  forgetCacheHitsWith(hash: ContentHash): number;
}

/**
 * Claims on fingerprints being produced, so that a fingerprint is produced once however many runs
 * need it at the same time (single flight through the store): the first run to claim it produces
 * it, the others wait for its `done` job and reuse it.
 */
export interface FingerprintClaims {
  /**
   * Claims `fingerprint` for `claimant`, atomically: taken when nobody holds it, when the claimant's
   * own job holds it, or when `stale(holder)` says the holder is gone (its process died, its job
   * ended without releasing); otherwise the live holder is returned and nothing changes.
   */
  claim(fingerprint: Fingerprint, claimant: Omit<Claim, 'fingerprint' | 'claimedAt'>, stale: (holder: Claim) => boolean): { readonly taken: boolean; readonly holder: Claim };
  /** Drops the claim when `job` holds it; idempotent. */
  release(fingerprint: Fingerprint, job: JobId): void;
  /** Who holds the claim on `fingerprint`, if anyone (`--explain`). */
  holder(fingerprint: Fingerprint): Claim | undefined;
}

/** The stat cache: content hashes of files, valid while their (dev, ino, size, mtime) stay the same. */
export interface FileHashStore {
  /** Hashes still valid for these files, keyed `${dev}:${ino}`. */
  getFileHashes(keys: readonly StatKey[]): Map<string, ContentHash>;
  putFileHashes(entries: readonly (StatKey & { readonly hash: ContentHash })[]): void;
}

export interface TagReader {
  getTag(name: string): TagRecord | undefined;
  listTags(): readonly TagRecord[];
}

export interface TagStore extends TagReader {
  /** Adds a tag; a name already taken is a DstackError unless `replace`. */
  putTag(tag: TagRecord, options?: { readonly replace?: boolean }): void;
  deleteTag(name: string): boolean;
  /** Shows the tag in `ps` (the TAG column). */
  setRunTag(name: RunName, tag: string | undefined): void;
}

/** Recording a run made elsewhere (`dstack pull` of a teammate's run from the team bucket). */
export interface RunImporter {
  /**
   * Records the run as it is — statuses, times, history, reuse origins, manifests, fingerprints and
   * logs — in one transaction, so `ps`, `ls`, `cp`, `logs` and the cache index see it like a run of
   * this home, or not at all. DS0271 when the name is taken here.
   */
  importRun(run: RunRecord, jobs: readonly JobRecord[], logs: Iterable<ImportedLog>): void;
}

/** What `prune` and `rm` ask of the store. */
export interface PruneQueries {
  /** Finished runs submitted before `before` (ms since epoch) that no tag was taken from. */
  listPrunableRuns(before: number, scope?: ProjectScope): readonly RunRecord[];
  /**
   * Every object hash a record points at directly: files of job and tag manifests, run snapshot
   * manifests and input listings. The last two are objects that list further objects: whoever
   * collects garbage must read them and keep what they list too. `except` leaves out the records
   * of these runs (what would remain once they are deleted); `only` reads these runs' alone.
   */
  referencedObjects(options?: { readonly except?: readonly string[]; readonly only?: readonly string[] }): Set<ContentHash>;
  /** Gives the space of deleted records back to the file system when there is enough of it to matter. */
  reclaimSpace(): SpaceReclaimed;
}

export interface SpaceReclaimed {
  /** The database's size (with its write-ahead log) before and after, in bytes. */
  readonly before: number;
  readonly after: number;
}

/** The whole local store: the focused stores over one connection. */
export interface Store {
  readonly runs: RunRecords;
  readonly logs: LogStore;
  readonly cache: CacheIndex;
  readonly fileHashes: FileHashStore;
  readonly tags: TagStore;
  readonly prune: PruneQueries;
  readonly importer: RunImporter;
  readonly claims: FingerprintClaims;
  /** The database file, for messages. */
  readonly path: string;
  /** Opened read-only (a read-only home): reads work, every write fails with a coded error. */
  readonly readOnly: boolean;
  close(): void;
}
