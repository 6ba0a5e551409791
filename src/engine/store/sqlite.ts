/**
 * The run store on SQLite (better-sqlite3, synchronous). One file, `store.db`, in the dstack home;
 * WAL so readers (`dstack ps`, `logs -f`) never block the writer, and a busy timeout so several
 * dstack processes at once wait their turn instead of failing. Every write that must be atomic
 * (a run with its jobs and its name, a job status with the run's status) is one IMMEDIATE
 * transaction: the write lock is taken up front, so no transaction can fail half-way on an upgrade.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Manifest } from '../objects.js';
import type { BackendHandle } from '../backend.js';
import { DstackError } from '../errors.js';
import type { ContentHash, Fingerprint, FingerprintParts, JobId, JobStatus, RunName } from '../types.js';
import { asContentHash, asJobId, asRunName, isFinal } from '../types.js';
import { ACTIVE_STATUSES_SQL, migrate, NewerSchemaError } from './migrations.js';
import { formatRunName, randomPrefix, type RandomSource } from './names.js';
import { aggregateStatus } from './status.js';
import type { CacheHit, JobRecord, LogRecord, NewRun, RunRecord, RunStore, StatKey, StatusUpdate, TagRecord } from './types.js';

export const STORE_FILE = 'store.db';
const BUSY_TIMEOUT_MS = 5000;
/** `dstack ps` without `-a`: how many of the newest runs to show besides the active ones. */
export const DEFAULT_PS_LIMIT = 20;

export interface OpenStoreOptions {
  /** Picks run-name prefixes; tests narrow it to force counter contention. */
  readonly random?: RandomSource;
  /** ms since epoch; tests pin it. */
  readonly now?: () => number;
}

/**
 * Opens (creating if needed) the store in `home`: the folder is made 0700 and `store.db` 0600 when
 * they are new, since runs record commands, env values and remote handles. Migrates the schema.
 * Failures a user can hit (permissions, disk full, a lock held too long, a damaged file) throw
 * DstackError DS0300 naming the file.
 */
export function openStore(home: string, options: OpenStoreOptions = {}): RunStore {
  const path = join(home, STORE_FILE);
  let db: Database.Database | undefined;
  try {
    if (!existsSync(home)) {
      mkdirSync(home, { recursive: true, mode: 0o700 });
      chmodSync(home, 0o700); // mkdir's mode is filtered by the umask
    }
    if (!existsSync(path)) {
      // Create it ourselves so it is never briefly world-readable; SQLite gives -wal and -shm the same mode.
      closeSync(openSync(path, 'a', 0o600));
      chmodSync(path, 0o600);
    }
    db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    migrate(db);
    return new SqliteRunStore(db, path, options);
  } catch (e) {
    db?.close();
    throw toStoreError(e, path);
  }
}

/** SQLite result codes a user can cause, with what to do about them. Anything else is our bug. */
function hintFor(code: string, path: string): { what: string; hint: string } | undefined {
  const dir = join(path, '..');
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
    return {
      what: `the run store stayed locked by another process for more than ${BUSY_TIMEOUT_MS / 1000} s`,
      hint: 'try again; if it keeps happening, look for a stuck dstack process (`ps aux | grep dstack`)',
    };
  if (code === 'SQLITE_FULL' || code === 'SQLITE_IOERR_WRITE' || code === 'SQLITE_IOERR_FSYNC')
    return { what: 'the disk holding the run store is full', hint: `free some space on the disk holding ${dir}` };
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')
    return {
      what: 'the run store is damaged',
      hint: `move ${path} aside (with its -wal and -shm files) to start afresh; the run history in it will be lost`,
    };
  if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH')
    return { what: 'the run store cannot be opened for writing', hint: `check the owner and permissions of ${dir}` };
  if (code.startsWith('SQLITE_IOERR'))
    return { what: `the run store could not be read or written (${code})`, hint: `check the disk holding ${dir}` };
  return undefined;
}

function toStoreError(e: unknown, path: string): unknown {
  if (e instanceof DstackError) return e;
  if (e instanceof NewerSchemaError)
    return new DstackError('DS0300', `${path} was written by a newer dstack (${e.message})`, {
      hint: 'upgrade dstack, or point DSTACK_HOME at another folder',
      cause: e,
    });
  if (e instanceof Database.SqliteError) {
    const h = hintFor(e.code, path);
    if (h) return new DstackError('DS0300', `${h.what}: ${path}`, { hint: h.hint, cause: e });
    return e;
  }
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOSPC' || code === 'ENOTDIR')
    return new DstackError('DS0300', `cannot create the run store ${path} (${code})`, {
      hint: 'check the permissions of the dstack home, or set DSTACK_HOME to a writable folder',
      cause: e,
    });
  return e;
}

interface RunRow {
  name: string;
  workflow: string;
  owner: string;
  backend: string;
  repo: string;
  args: string;
  tag: string | null;
  status: string;
  submitted_at: number;
  finished_at: number | null;
  pid: number | null;
  hostname: string | null;
  snapshot: string | null;
}

interface JobRow {
  id: string;
  run: string;
  idx: number;
  workflow: string;
  spec: string;
  deps: string;
  status: string;
  exit_code: number | null;
  reason: string | null;
  handle: string | null;
  manifest: string | null;
  fingerprint: string | null;
  fingerprint_parts: string | null;
  submitted_at: number;
  started_at: number | null;
  finished_at: number | null;
}

interface TagRow {
  name: string;
  run: string | null;
  manifest: string;
  created_at: number;
}

interface HistoryRow {
  job: string;
  status: string;
  at: number;
}

const RUN_COLUMNS = 'name, workflow, owner, backend, repo, args, tag, status, submitted_at, finished_at, pid, hostname, snapshot';

function toRun(r: RunRow): RunRecord {
  return {
    name: asRunName(r.name),
    workflow: r.workflow,
    owner: r.owner,
    backend: r.backend,
    repo: JSON.parse(r.repo) as RunRecord['repo'],
    args: JSON.parse(r.args) as string[],
    ...(r.tag !== null && { tag: r.tag }),
    status: r.status as JobStatus,
    submittedAt: r.submitted_at,
    ...(r.finished_at !== null && { finishedAt: r.finished_at }),
    ...(r.pid !== null && { pid: r.pid }),
    ...(r.hostname !== null && { hostname: r.hostname }),
    ...(r.snapshot !== null && { snapshot: asContentHash(r.snapshot) }),
  };
}

function toTag(r: TagRow): TagRecord {
  return {
    name: r.name,
    ...(r.run !== null && { run: asRunName(r.run) }),
    manifest: JSON.parse(r.manifest) as Manifest,
    createdAt: r.created_at,
  };
}

function toJob(r: JobRow, history: JobRecord['history']): JobRecord {
  return {
    id: asJobId(r.id),
    run: asRunName(r.run),
    workflow: r.workflow,
    index: r.idx,
    spec: JSON.parse(r.spec) as JobRecord['spec'],
    deps: JSON.parse(r.deps) as JobId[],
    status: r.status as JobStatus,
    ...(r.exit_code !== null && { exitCode: r.exit_code }),
    ...(r.reason !== null && { reason: r.reason }),
    ...(r.handle !== null && { handle: JSON.parse(r.handle) as BackendHandle }),
    ...(r.manifest !== null && { manifest: JSON.parse(r.manifest) as Manifest }),
    ...(r.fingerprint !== null && { fingerprint: r.fingerprint as Fingerprint }),
    ...(r.fingerprint_parts !== null && { fingerprintParts: JSON.parse(r.fingerprint_parts) as FingerprintParts }),
    submittedAt: r.submitted_at,
    ...(r.started_at !== null && { startedAt: r.started_at }),
    ...(r.finished_at !== null && { finishedAt: r.finished_at }),
    history,
  };
}

const jobIdOf = (run: string, workflow: string): JobId => asJobId(`${run}/${workflow}`);

class SqliteRunStore implements RunStore {
  private readonly random: RandomSource;
  private readonly now: () => number;
  private readonly s;

  constructor(
    private readonly db: Database.Database,
    private readonly path: string,
    options: OpenStoreOptions,
  ) {
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    const p = (sql: string) => db.prepare(sql);
    this.s = {
      nextName: p(
        `INSERT INTO name_counters (prefix, next) VALUES (?, 2)
         ON CONFLICT (prefix) DO UPDATE SET next = next + 1 RETURNING next - 1 AS n`,
      ),
      runExists: p('SELECT 1 FROM runs WHERE name = ?').pluck(),
      insertRun: p(
        `INSERT INTO runs (name, workflow, owner, backend, repo, repo_root, args, tag, status, submitted_at, pid, hostname)
         VALUES (@name, @workflow, @owner, @backend, @repo, @repoRoot, @args, @tag, 'submitted', @at, @pid, @hostname)`,
      ),
      insertJob: p(
        `INSERT INTO jobs (id, run, idx, workflow, spec, deps, status, submitted_at)
         VALUES (@id, @run, @idx, @workflow, @spec, @deps, 'submitted', @at)`,
      ),
      insertHistory: p('INSERT INTO job_status_history (job, status, at) VALUES (?, ?, ?)'),
      getRun: p(`SELECT ${RUN_COLUMNS} FROM runs WHERE name = ?`),
      newestRuns: p(`SELECT ${RUN_COLUMNS} FROM runs ORDER BY submitted_at DESC, rowid DESC LIMIT ?`),
      activeRuns: p(
        `SELECT ${RUN_COLUMNS} FROM runs WHERE status IN ${ACTIVE_STATUSES_SQL} ORDER BY submitted_at DESC, rowid DESC`,
      ),
      jobsOfRun: p('SELECT * FROM jobs WHERE run = ? ORDER BY idx'),
      historyOfRun: p(
        `SELECT h.job, h.status, h.at FROM job_status_history h JOIN jobs j ON j.id = h.job
         WHERE j.run = ? ORDER BY h.id`,
      ),
      getJob: p('SELECT * FROM jobs WHERE id = ?'),
      historyOfJob: p('SELECT job, status, at FROM job_status_history WHERE job = ? ORDER BY id'),
      updateJobStatus: p(
        `UPDATE jobs SET status = @status,
           exit_code = coalesce(@exitCode, exit_code), reason = coalesce(@reason, reason),
           started_at = CASE WHEN @status = 'running' AND started_at IS NULL THEN @at ELSE started_at END,
           finished_at = CASE WHEN @final THEN @at ELSE finished_at END
         WHERE id = @id`,
      ),
      statusesOfRun: p('SELECT status FROM jobs WHERE run = ?').pluck(),
      updateRunStatus: p('UPDATE runs SET status = ?, finished_at = ? WHERE name = ?'),
      setHandle: p('UPDATE jobs SET handle = ? WHERE id = ?'),
      setManifest: p('UPDATE jobs SET manifest = ? WHERE id = ?'),
      setOwner: p('UPDATE runs SET pid = ?, hostname = ? WHERE name = ?'),
      // One statement, so the write lock is held from reading max(seq) to the insert: correct even
      // if two processes ever appended to the same job.
      appendLog: p(
        `INSERT INTO logs (job, seq, at, stream, data)
         SELECT @job, coalesce(max(seq), 0) + 1, @at, @stream, @data FROM logs WHERE job = @job`,
      ),
      jobsForLogs: p('SELECT id, workflow, idx FROM jobs WHERE run = ? ORDER BY idx'),
      logsOfJob: p('SELECT seq, at, stream, data FROM logs WHERE job = ? AND seq > ? AND at >= ? ORDER BY seq'),
      deleteRun: p('DELETE FROM runs WHERE name = ?'),
      setFingerprint: p('UPDATE jobs SET fingerprint = ?, fingerprint_parts = ? WHERE id = ?'),
      cachedJob: p(
        `SELECT id FROM jobs WHERE fingerprint = ? AND status = 'done' AND manifest IS NOT NULL
         ORDER BY finished_at DESC, rowid DESC LIMIT 1`,
      ).pluck(),
      cacheHit: p(
        `SELECT id, reason, manifest FROM jobs WHERE fingerprint = ? AND status = 'done' AND manifest IS NOT NULL
         ORDER BY finished_at DESC, rowid DESC LIMIT 1`,
      ),
      lastFingerprinted: p(
        `SELECT j.id FROM jobs j JOIN runs r ON r.name = j.run
         WHERE j.workflow = ? AND j.fingerprint IS NOT NULL AND r.repo_root = ?
         ORDER BY j.submitted_at DESC, j.rowid DESC LIMIT 1`,
      ).pluck(),
      setSnapshot: p('UPDATE runs SET snapshot = ? WHERE name = ?'),
      getFileHash: p('SELECT size, mtime_ns, hash FROM file_hashes WHERE dev = ? AND ino = ?'),
      putFileHash: p(
        `INSERT INTO file_hashes (dev, ino, size, mtime_ns, hash) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (dev, ino) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, hash = excluded.hash`,
      ),
      insertTag: p('INSERT INTO tags (name, run, manifest, created_at) VALUES (@name, @run, @manifest, @createdAt)'),
      replaceTag: p('INSERT OR REPLACE INTO tags (name, run, manifest, created_at) VALUES (@name, @run, @manifest, @createdAt)'),
      getTag: p('SELECT * FROM tags WHERE name = ?'),
      listTags: p('SELECT * FROM tags ORDER BY name'),
      deleteTag: p('DELETE FROM tags WHERE name = ?'),
      setRunTag: p('UPDATE runs SET tag = ? WHERE name = ?'),
      prunable: p(
        `SELECT ${RUN_COLUMNS} FROM runs
         WHERE submitted_at < ? AND status NOT IN ${ACTIVE_STATUSES_SQL}
           AND tag IS NULL AND name NOT IN (SELECT run FROM tags WHERE run IS NOT NULL)
         ORDER BY submitted_at`,
      ),
      allManifests: p('SELECT manifest FROM jobs WHERE manifest IS NOT NULL').pluck(),
      allFingerprintParts: p('SELECT fingerprint_parts FROM jobs WHERE fingerprint_parts IS NOT NULL').pluck(),
      allSnapshots: p('SELECT snapshot FROM runs WHERE snapshot IS NOT NULL').pluck(),
      allTagManifests: p('SELECT manifest FROM tags').pluck(),
      // A hash is 64 hex digits: found in a manifest's JSON only as that object's `hash`.
      forgetHitsWith: p(
        `UPDATE jobs SET fingerprint = NULL
         WHERE fingerprint IS NOT NULL AND manifest IS NOT NULL AND instr(manifest, ?) > 0`,
      ),
    };
  }

  /** Runs `fn`, turning SQLite failures a user can hit into DS0300. */
  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw toStoreError(e, this.path);
    }
  }

  private allocateName(): RunName {
    // The counter makes the name unique; the loop only guards against a run inserted by hand or a
    // counter row lost to an old backup.
    for (;;) {
      const prefix = randomPrefix(this.random);
      const { n } = this.s.nextName.get(prefix) as { n: number };
      const name = formatRunName(prefix, n);
      if (!this.s.runExists.get(name)) return asRunName(name);
    }
  }

  reserveName(): RunName {
    return this.guard(() => this.db.transaction(() => this.allocateName()).immediate());
  }

  createRun(run: NewRun): { readonly run: RunRecord; readonly jobs: readonly JobRecord[] } {
    if (run.jobs.length === 0) throw new Error('createRun: a run needs at least one job');
    const at = this.now();
    return this.guard(() =>
      this.db
        .transaction(() => {
          // A reserved name is already unique (its counter moved); inserting it twice fails on the key.
          const name = run.name ?? this.allocateName();
          this.s.insertRun.run({
            name,
            workflow: run.workflow,
            owner: run.owner,
            backend: run.backend,
            repo: JSON.stringify(run.repo),
            repoRoot: run.repo.root,
            args: JSON.stringify(run.args),
            tag: run.tag ?? null,
            at,
            pid: run.pid ?? null,
            hostname: run.hostname ?? null,
          });
          const ids = run.jobs.map((j) => jobIdOf(name, j.spec.workflow));
          run.jobs.forEach((job, idx) => {
            const deps = job.deps.map((d) => {
              if (!Number.isInteger(d) || d < 0 || d >= idx)
                throw new Error(`createRun: job ${idx} (${job.spec.workflow}) depends on ${d}, not an earlier job`);
              return ids[d];
            });
            const id = ids[idx] as JobId;
            this.s.insertJob.run({
              id,
              run: name,
              idx,
              workflow: job.spec.workflow,
              spec: JSON.stringify(job.spec),
              deps: JSON.stringify(deps),
              at,
            });
            this.s.insertHistory.run(id, 'submitted', at);
          });
          return { run: this.readRun(name) as RunRecord, jobs: this.readJobs(name) };
        })
        .immediate(),
    );
  }

  private readRun(name: string): RunRecord | undefined {
    const row = this.s.getRun.get(name) as RunRow | undefined;
    return row && toRun(row);
  }

  private readJobs(run: string): JobRecord[] {
    const rows = this.s.jobsOfRun.all(run) as JobRow[];
    const history = new Map<string, { status: JobStatus; at: number }[]>();
    for (const h of this.s.historyOfRun.all(run) as HistoryRow[]) {
      let list = history.get(h.job);
      if (!list) history.set(h.job, (list = []));
      list.push({ status: h.status as JobStatus, at: h.at });
    }
    return rows.map((r) => toJob(r, history.get(r.id) ?? []));
  }

  private readJob(id: string): JobRecord | undefined {
    const row = this.s.getJob.get(id) as JobRow | undefined;
    if (!row) return undefined;
    const history = (this.s.historyOfJob.all(id) as HistoryRow[]).map((h) => ({ status: h.status as JobStatus, at: h.at }));
    return toJob(row, history);
  }

  getRun(name: string): RunRecord | undefined {
    return this.guard(() => this.readRun(name));
  }

  /**
   * Newest first (by submission time).
   *
   * - `all`: every run, or the newest `limit` when one is given.
   * - otherwise (plain `dstack ps`): every run that is still active, however old — they are what a
   *   user most needs to see and act on — plus the newest `limit` runs (default 20) whatever their
   *   status, so the run that just finished is there too. dstack 0.7 showed the active runs and the
   *   last one; a few more recent ones cost nothing and answer "what did I just run?".
   *
   * Both parts read through an index, so the cost does not grow with the history.
   */
  listRuns(options: { readonly all?: boolean; readonly limit?: number } = {}): readonly RunRecord[] {
    return this.guard(() => {
      if (options.all) {
        const rows = this.s.newestRuns.all(options.limit ?? -1) as RunRow[];
        return rows.map(toRun);
      }
      const limit = options.limit ?? DEFAULT_PS_LIMIT;
      return this.db.transaction(() => {
        const newest = this.s.newestRuns.all(limit) as RunRow[];
        const active = this.s.activeRuns.all() as RunRow[];
        const seen = new Set(newest.map((r) => r.name));
        const extra = active.filter((r) => !seen.has(r.name));
        if (extra.length === 0) return newest.map(toRun);
        // Both lists are sorted the same way; active runs older than the newest `limit` go after them.
        return [...newest, ...extra].map(toRun);
      })();
    });
  }

  jobs(run: string): readonly JobRecord[] {
    return this.guard(() => this.db.transaction(() => this.readJobs(run))());
  }

  getJob(id: JobId): JobRecord | undefined {
    return this.guard(() => this.db.transaction(() => this.readJob(id))());
  }

  /**
   * Records `status` with its time and updates the run's aggregate status in the same transaction.
   * Sets `startedAt` on the first `running` and `finishedAt` on a final status; `exitCode`/`reason`
   * are kept when not given. Returns false, changing nothing, when the job is already final or does
   * not exist (e.g. its run was deleted). Setting the status a job already has records no history
   * but still applies `update`.
   */
  setJobStatus(id: JobId, status: JobStatus, update: StatusUpdate = {}): boolean {
    const at = this.now();
    return this.guard(() =>
      this.db
        .transaction(() => {
          const row = this.s.getJob.get(id) as JobRow | undefined;
          if (!row || isFinal(row.status as JobStatus)) return false;
          this.s.updateJobStatus.run({
            id,
            status,
            exitCode: update.exitCode ?? null,
            reason: update.reason ?? null,
            at,
            final: isFinal(status) ? 1 : 0,
          });
          if (row.status !== status) this.s.insertHistory.run(id, status, at);
          const runStatus = aggregateStatus(this.s.statusesOfRun.all(row.run) as JobStatus[]);
          this.s.updateRunStatus.run(runStatus, isFinal(runStatus) ? at : null, row.run);
          return true;
        })
        .immediate(),
    );
  }

  private mustChange(changes: number, what: string): void {
    if (changes !== 1) throw new Error(`${what}: no such record`);
  }

  setJobHandle(id: JobId, handle: BackendHandle | undefined): void {
    const changes = this.guard(() => this.s.setHandle.run(handle === undefined ? null : JSON.stringify(handle), id).changes);
    this.mustChange(changes, `setJobHandle(${id})`);
  }

  setJobManifest(id: JobId, manifest: Manifest): void {
    const changes = this.guard(() => this.s.setManifest.run(JSON.stringify(manifest), id).changes);
    this.mustChange(changes, `setJobManifest(${id})`);
  }

  setRunOwnerProcess(name: RunName, pid: number, hostname: string): void {
    const changes = this.guard(() => this.s.setOwner.run(pid, hostname, name).changes);
    this.mustChange(changes, `setRunOwnerProcess(${name})`);
  }

  appendLog(job: JobId, stream: 'stdout' | 'stderr', data: Buffer, at: number = this.now()): void {
    this.guard(() => this.s.appendLog.run({ job, stream, data, at }));
  }

  /**
   * A run's log records ordered by (time, job index, seq). `sinceMs` keeps records at or after that
   * time; `after` keeps, for the jobs it names, only records with a greater seq (what `logs -f`
   * polls with). Each job is read through its (job, seq) key, so a poll reads only what is new.
   */
  readLogs(
    run: string,
    options: { readonly sinceMs?: number; readonly after?: ReadonlyMap<JobId, number> } = {},
  ): readonly LogRecord[] {
    const since = options.sinceMs ?? Number.MIN_SAFE_INTEGER;
    return this.guard(() =>
      this.db.transaction(() => {
        const out: (LogRecord & { idx: number })[] = [];
        for (const j of this.s.jobsForLogs.all(run) as { id: string; workflow: string; idx: number }[]) {
          const job = asJobId(j.id);
          const after = options.after?.get(job) ?? 0;
          const rows = this.s.logsOfJob.all(job, after, since) as { seq: number; at: number; stream: string; data: Buffer }[];
          for (const r of rows)
            out.push({ seq: r.seq, job, workflow: j.workflow, stream: r.stream as LogRecord['stream'], at: r.at, data: r.data, idx: j.idx });
        }
        out.sort((a, b) => a.at - b.at || a.idx - b.idx || a.seq - b.seq);
        return out.map(({ idx: _idx, ...r }) => r);
      })(),
    );
  }

  /** Deletes the run with its jobs, their status history and logs (foreign-key cascade). */
  deleteRun(name: string): void {
    this.guard(() => this.s.deleteRun.run(name));
  }

  setJobFingerprint(id: JobId, fingerprint: Fingerprint, parts: FingerprintParts): void {
    const changes = this.guard(() => this.s.setFingerprint.run(fingerprint, JSON.stringify(parts), id).changes);
    this.mustChange(changes, `setJobFingerprint(${id})`);
  }

  findCachedJob(fingerprint: Fingerprint): JobRecord | undefined {
    return this.guard(() =>
      this.db.transaction(() => {
        const id = this.s.cachedJob.get(fingerprint) as string | undefined;
        return id === undefined ? undefined : this.readJob(id);
      })(),
    );
  }

  findCacheHit(fingerprint: Fingerprint): CacheHit | undefined {
    const row = this.guard(() => this.s.cacheHit.get(fingerprint)) as { id: string; reason: string | null; manifest: string } | undefined;
    if (!row) return undefined;
    return { id: asJobId(row.id), manifest: JSON.parse(row.manifest) as Manifest, ...(row.reason !== null ? { reason: row.reason } : {}) };
  }

  lastFingerprintedJob(workflow: string, repoRoot: string): JobRecord | undefined {
    return this.guard(() =>
      this.db.transaction(() => {
        const id = this.s.lastFingerprinted.get(workflow, repoRoot) as string | undefined;
        return id === undefined ? undefined : this.readJob(id);
      })(),
    );
  }

  setRunSnapshot(name: RunName, snapshot: ContentHash): void {
    const changes = this.guard(() => this.s.setSnapshot.run(snapshot, name).changes);
    this.mustChange(changes, `setRunSnapshot(${name})`);
  }

  getFileHashes(keys: readonly StatKey[]): Map<string, ContentHash> {
    return this.guard(() =>
      this.db.transaction(() => {
        const out = new Map<string, ContentHash>();
        for (const k of keys) {
          const row = this.s.getFileHash.get(k.dev, k.ino) as { size: number; mtime_ns: number; hash: string } | undefined;
          if (row && row.size === k.size && row.mtime_ns === k.mtimeNs) out.set(`${k.dev}:${k.ino}`, asContentHash(row.hash));
        }
        return out;
      })(),
    );
  }

  putFileHashes(entries: readonly (StatKey & { readonly hash: ContentHash })[]): void {
    if (entries.length === 0) return;
    this.guard(() =>
      this.db
        .transaction(() => {
          for (const e of entries) this.s.putFileHash.run(e.dev, e.ino, e.size, e.mtimeNs, e.hash);
        })
        .immediate(),
    );
  }

  putTag(tag: TagRecord, options: { readonly replace?: boolean } = {}): void {
    const row = { name: tag.name, run: tag.run ?? null, manifest: JSON.stringify(tag.manifest), createdAt: tag.createdAt };
    this.guard(() => {
      if (options.replace) {
        this.s.replaceTag.run(row);
        return;
      }
      try {
        this.s.insertTag.run(row);
      } catch (e) {
        if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
          throw new DstackError('DS0106', `tag '${tag.name}' already exists`, {
            hint: `pick another name, or delete it first: dstack tags delete ${tag.name}`,
          });
        }
        throw e;
      }
    });
  }

  getTag(name: string): TagRecord | undefined {
    return this.guard(() => {
      const row = this.s.getTag.get(name) as TagRow | undefined;
      return row && toTag(row);
    });
  }

  listTags(): readonly TagRecord[] {
    return this.guard(() => (this.s.listTags.all() as TagRow[]).map(toTag));
  }

  deleteTag(name: string): boolean {
    return this.guard(() => this.s.deleteTag.run(name).changes > 0);
  }

  setRunTag(name: RunName, tag: string | undefined): void {
    const changes = this.guard(() => this.s.setRunTag.run(tag ?? null, name).changes);
    this.mustChange(changes, `setRunTag(${name})`);
  }

  listPrunableRuns(before: number): readonly RunRecord[] {
    return this.guard(() => (this.s.prunable.all(before) as RunRow[]).map(toRun));
  }

  /**
   * Every object a record still points at. Read in one transaction, so a concurrent run cannot slip
   * a reference in between two of the reads; prune still must not delete objects newer than the
   * read (a run may be writing objects it has not recorded yet) — see src/artifacts prune.
   */
  referencedObjects(): Set<ContentHash> {
    return this.guard(() =>
      this.db.transaction(() => {
        const out = new Set<ContentHash>();
        const addManifest = (json: string): void => {
          for (const e of (JSON.parse(json) as Manifest).entries) if (e.type === 'file') out.add(e.hash);
        };
        for (const m of this.s.allManifests.all() as string[]) addManifest(m);
        for (const m of this.s.allTagManifests.all() as string[]) addManifest(m);
        for (const h of this.s.allSnapshots.all() as string[]) out.add(asContentHash(h));
        for (const p of this.s.allFingerprintParts.all() as string[]) {
          const listing = (JSON.parse(p) as FingerprintParts).inputsListing;
          if (listing) out.add(listing);
        }
        return out;
      })(),
    );
  }

  forgetCacheHitsWith(hash: ContentHash): number {
    if (!/^[0-9a-f]{64}$/.test(hash)) return 0;
    return this.guard(() => this.s.forgetHitsWith.run(hash).changes);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
