/**
 * Runs and their jobs on SQLite. Every write that must be atomic (a run with its jobs and its name,
 * a job status with the run's status) is one IMMEDIATE transaction.
 */
import type { Manifest } from '../objects.js';
import type { BackendHandle } from '../backend.js';
import type { ContentHash, JobId, JobStatus, RunName } from '../types.js';
import { asJobId, asRunName, isFinal } from '../types.js';
import type { Connection } from './connection.js';
import { ACTIVE_STATUSES_SQL } from './migrations.js';
import { formatRunName, randomPrefix, type RandomSource } from './names.js';
import type { CacheHit, JobPort, JobRecord, NewRun, ProjectScope, RunRecord, StatusUpdate } from './records.js';
import { RUN_COLUMNS, runInsertParams, toJob, toRun, type HistoryRow, type JobRow, type RunRow } from './rows.js';
import { aggregateStatus } from './status.js';
import type { RunRecords } from './types.js';

/** `dstack ps` without `-a`: how many of the newest runs to show besides the active ones. */
export const DEFAULT_PS_LIMIT = 20;

const jobIdOf = (run: string, workflow: string): JobId => asJobId(`${run}/${workflow}`);

const ORDER = 'ORDER BY submitted_at DESC, rowid DESC';

function statements(c: Connection) {
  const p = (sql: string) => c.prepare(sql);
  return {
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
    newest: p(`SELECT ${RUN_COLUMNS} FROM runs ${ORDER} LIMIT ?`),
    newestOf: p(`SELECT ${RUN_COLUMNS} FROM runs WHERE repo_root = ? ${ORDER} LIMIT ?`),
    active: p(`SELECT ${RUN_COLUMNS} FROM runs WHERE status IN ${ACTIVE_STATUSES_SQL} ${ORDER}`),
    activeOf: p(`SELECT ${RUN_COLUMNS} FROM runs WHERE status IN ${ACTIVE_STATUSES_SQL} AND repo_root = ? ${ORDER}`),
    jobsOfRun: p('SELECT * FROM jobs WHERE run = ? ORDER BY idx'),
    historyOfRun: p(
      `SELECT h.job, h.status, h.at FROM job_status_history h JOIN jobs j ON j.id = h.job
       WHERE j.run = ? ORDER BY h.id`,
    ),
    getJob: p('SELECT * FROM jobs WHERE id = ?'),
    jobState: p('SELECT run, status FROM jobs WHERE id = ?'),
    historyOfJob: p('SELECT job, status, at FROM job_status_history WHERE job = ? ORDER BY id'),
    updateJobStatus: p(
      `UPDATE jobs SET status = @status,
         exit_code = coalesce(@exitCode, exit_code), reason = coalesce(@reason, reason),
         error_code = coalesce(@errorCode, error_code),
         started_at = CASE WHEN @status = 'running' AND started_at IS NULL THEN @at ELSE started_at END,
         finished_at = CASE WHEN @final THEN @at ELSE finished_at END
       WHERE id = @id`,
    ),
    setReuse: p('UPDATE jobs SET manifest = ?, cached_from = ? WHERE id = ?'),
    statusesOfRun: p('SELECT status FROM jobs WHERE run = ?').pluck(),
    updateRunStatus: p('UPDATE runs SET status = ?, finished_at = ? WHERE name = ?'),
    setHandle: p('UPDATE jobs SET handle = ? WHERE id = ?'),
    addPort: p(`UPDATE jobs SET ports = json_insert(coalesce(ports, '[]'), '$[#]', json(?)) WHERE id = ?`),
    setManifest: p('UPDATE jobs SET manifest = ? WHERE id = ?'),
    setOwner: p('UPDATE runs SET pid = ?, hostname = ? WHERE name = ?'),
    setSnapshot: p('UPDATE runs SET snapshot = ? WHERE name = ?'),
    deleteRun: p('DELETE FROM runs WHERE name = ?'),
  };
}

export class SqliteRuns implements RunRecords {
  private readonly s: ReturnType<typeof statements>;

  constructor(
    private readonly c: Connection,
    private readonly random: RandomSource = Math.random,
  ) {
    this.s = statements(c);
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
    return this.c.write(() => this.allocateName());
  }

  createRun(run: NewRun): { readonly run: RunRecord; readonly jobs: readonly JobRecord[] } {
    if (run.jobs.length === 0) throw new Error('createRun: a run needs at least one job');
    const at = this.c.now();
    return this.c.write(() => {
      // A reserved name is already unique (its counter moved); inserting it twice fails on the key.
      const name = run.name ?? this.allocateName();
      this.s.insertRun.run({
        ...runInsertParams({ ...run, name }),
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
        this.s.insertJob.run({ id, run: name, idx, workflow: job.spec.workflow, spec: JSON.stringify(job.spec), deps: JSON.stringify(deps), at });
        this.s.insertHistory.run(id, 'submitted', at);
      });
      return { run: this.readRun(name) as RunRecord, jobs: this.readJobs(name) };
    });
  }

  private readRun(name: string): RunRecord | undefined {
    const row = this.s.getRun.get(name) as RunRow | undefined;
    return row && toRun(this.c, row);
  }

  private readJobs(run: string): JobRecord[] {
    const rows = this.s.jobsOfRun.all(run) as JobRow[];
    const history = new Map<string, { status: JobStatus; at: number }[]>();
    for (const h of this.s.historyOfRun.all(run) as HistoryRow[]) {
      let list = history.get(h.job);
      if (!list) history.set(h.job, (list = []));
      list.push({ status: h.status as JobStatus, at: h.at });
    }
    return rows.map((r) => toJob(this.c, r, history.get(r.id) ?? []));
  }

  getRun(name: string): RunRecord | undefined {
    return this.c.guard(() => this.readRun(name));
  }

  /**
   * Newest first (by submission time), of the project in `scope` or of every project.
   *
   * - `all`: every run, or the newest `limit` when one is given.
   * - otherwise (plain `dstack ps`): every run that is still active, however old — they are what a
   *   user most needs to see and act on — plus the newest `limit` runs (default 20) whatever their
   *   status, so the run that just finished is there too. dstack 0.7 showed the active runs and the
   *   last one; a few more recent ones cost nothing and answer "what did I just run?".
   *
   * Both parts read through an index, so the cost does not grow with the history.
   */
  listRuns(options: ProjectScope & { readonly all?: boolean; readonly limit?: number } = {}): readonly RunRecord[] {
    const { project } = options;
    const newest = (limit: number): RunRow[] => (project === undefined ? this.s.newest.all(limit) : this.s.newestOf.all(project, limit)) as RunRow[];
    return this.c.read(() => {
      if (options.all) return newest(options.limit ?? -1).map((r) => toRun(this.c, r));
      const rows = newest(options.limit ?? DEFAULT_PS_LIMIT);
      const seen = new Set(rows.map((r) => r.name));
      // Both lists are sorted the same way; active runs older than the newest `limit` go after them.
      const active = (project === undefined ? this.s.active.all() : this.s.activeOf.all(project)) as RunRow[];
      for (const r of active) if (!seen.has(r.name)) rows.push(r);
      return rows.map((r) => toRun(this.c, r));
    });
  }

  jobs(run: string): readonly JobRecord[] {
    return this.c.read(() => this.readJobs(run));
  }

  getJob(id: JobId): JobRecord | undefined {
    return this.c.read(() => {
      const row = this.s.getJob.get(id) as JobRow | undefined;
      if (!row) return undefined;
      const history = (this.s.historyOfJob.all(id) as HistoryRow[]).map((h) => ({ status: h.status as JobStatus, at: h.at }));
      return toJob(this.c, row, history);
    });
  }

  /**
   * Records `status` with its time and updates the run's aggregate status in the same transaction.
   * Sets `startedAt` on the first `running` and `finishedAt` on a final status; `exitCode`, `reason`
   * and `errorCode` are kept when not given. Returns false, changing nothing, when the job is
   * already final or does not exist (e.g. its run was deleted). Setting the status a job already
   * has records no history but still applies `update`.
   */
  setJobStatus(id: JobId, status: JobStatus, update: StatusUpdate = {}): boolean {
    const at = this.c.now();
    return this.c.essential(() => this.c.db.transaction(() => this.changeStatus(id, status, update, at)).immediate());
  }

  private changeStatus(id: JobId, status: JobStatus, update: StatusUpdate, at: number): boolean {
    const row = this.s.jobState.get(id) as { run: string; status: JobStatus } | undefined;
    if (!row || isFinal(row.status)) return false;
    this.s.updateJobStatus.run({
      id,
      status,
      exitCode: update.exitCode ?? null,
      reason: update.reason ?? null,
      errorCode: update.errorCode ?? null,
      at,
      final: isFinal(status) ? 1 : 0,
    });
    if (row.status !== status) this.s.insertHistory.run(id, status, at);
    const runStatus = aggregateStatus(this.s.statusesOfRun.all(row.run) as JobStatus[]);
    this.s.updateRunStatus.run(runStatus, isFinal(runStatus) ? at : null, row.run);
    return true;
  }

  recordReuse(id: JobId, hit: CacheHit): boolean {
    const at = this.c.now();
    const reuse = this.c.db.transaction(() => {
      const state = this.s.jobState.get(id) as { status: JobStatus } | undefined;
      if (!state || isFinal(state.status)) return false;
      this.s.setReuse.run(JSON.stringify(hit.manifest), hit.origin.job, id);
      return this.changeStatus(id, 'done', { exitCode: 0 }, at);
    });
    return this.c.essential(() => reuse.immediate());
  }

  setJobHandle(id: JobId, handle: BackendHandle | undefined): void {
    const changes = this.c.guard(() => this.s.setHandle.run(handle === undefined ? null : JSON.stringify(handle), id).changes);
    this.c.mustChange(changes, `setJobHandle(${id})`);
  }

  addJobPort(id: JobId, port: JobPort): void {
    const changes = this.c.guard(() => this.s.addPort.run(JSON.stringify({ port: port.port, url: port.url }), id).changes);
    this.c.mustChange(changes, `addJobPort(${id})`);
  }

  setJobManifest(id: JobId, manifest: Manifest): void {
    const changes = this.c.guard(() => this.s.setManifest.run(JSON.stringify(manifest), id).changes);
    this.c.mustChange(changes, `setJobManifest(${id})`);
  }

  setRunOwnerProcess(name: RunName, pid: number, hostname: string): void {
    const changes = this.c.guard(() => this.s.setOwner.run(pid, hostname, name).changes);
    this.c.mustChange(changes, `setRunOwnerProcess(${name})`);
  }

  setRunSnapshot(name: RunName, snapshot: ContentHash): void {
    const changes = this.c.guard(() => this.s.setSnapshot.run(snapshot, name).changes);
    this.c.mustChange(changes, `setRunSnapshot(${name})`);
  }

  /** Deletes the run with its jobs, their status history and logs (foreign-key cascade). */
  deleteRun(name: string): void {
    this.c.essential(() => this.s.deleteRun.run(name));
  }
}
