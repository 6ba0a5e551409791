/**
 * Importing a run made elsewhere (`dstack pull` of a teammate's run from the team bucket) on SQLite:
 * its records written as they are — statuses, times, history, reuse origins, error codes,
 * fingerprints, manifests and logs — in one transaction, so `ps`, `ls`, `cp`, `logs` and the cache
 * index see it like a run of this home, or not at all. The name must be free in this home.
 */
import { DstackError } from '../errors.js';
import type { Connection } from './connection.js';
import type { ImportedLog, JobRecord, RunRecord } from './records.js';
import { runInsertParams } from './rows.js';
import type { RunImporter } from './types.js';

export class SqliteImporter implements RunImporter {
  private readonly s;

  constructor(private readonly c: Connection) {
    const p = (sql: string) => c.prepare(sql);
    this.s = {
      exists: p('SELECT 1 FROM runs WHERE name = ?').pluck(),
      insertRun: p(
        `INSERT INTO runs (name, workflow, owner, backend, repo, repo_root, args, tag, status, submitted_at, finished_at, pid, hostname, snapshot)
         VALUES (@name, @workflow, @owner, @backend, @repo, @repoRoot, @args, @tag, @status, @submittedAt, @finishedAt, NULL, NULL, NULL)`,
      ),
      insertJob: p(
        `INSERT INTO jobs (id, run, idx, workflow, spec, deps, status, exit_code, reason, error_code, cached_from, manifest, fingerprint, fingerprint_parts, submitted_at, started_at, finished_at)
         VALUES (@id, @run, @idx, @workflow, @spec, @deps, @status, @exitCode, @reason, @errorCode, @cachedFrom, @manifest, @fingerprint, @parts, @submittedAt, @startedAt, @finishedAt)`,
      ),
      insertHistory: p('INSERT INTO job_status_history (job, status, at) VALUES (?, ?, ?)'),
      insertLog: p('INSERT INTO logs (job, seq, at, stream, data) VALUES (?, ?, ?, ?, ?)'),
    };
  }

  importRun(run: RunRecord, jobs: readonly JobRecord[], logs: Iterable<ImportedLog>): void {
    this.c.write(() => {
      if (this.s.exists.get(run.name)) {
        throw new DstackError('DS0271', `a run named ${run.name} is already in this home`, {
          hint: 'see it with `dstack ps -a`; remove it first with `dstack rm` if it is a stale copy',
        });
      }
      this.s.insertRun.run({
        ...runInsertParams(run),
        status: run.status,
        submittedAt: run.submittedAt,
        finishedAt: run.finishedAt ?? null,
      });
      for (const j of jobs) this.insertJob(run, j);
      const seqs = new Map<string, number>();
      for (const l of logs) {
        const seq = (seqs.get(l.job) ?? 0) + 1;
        seqs.set(l.job, seq);
        this.s.insertLog.run(l.job, seq, l.at, l.stream, l.data);
      }
    });
  }

  private insertJob(run: RunRecord, j: JobRecord): void {
    this.s.insertJob.run({
      id: j.id,
      run: run.name,
      idx: j.index,
      workflow: j.workflow,
      spec: JSON.stringify(j.spec),
      deps: JSON.stringify(j.deps),
      status: j.status,
      exitCode: j.exitCode ?? null,
      reason: j.reason ?? null,
      errorCode: j.errorCode ?? null,
      cachedFrom: j.cachedFrom ?? null,
      manifest: j.manifest ? JSON.stringify(j.manifest) : null,
      fingerprint: j.fingerprint ?? null,
      parts: j.fingerprintParts ? JSON.stringify(j.fingerprintParts) : null,
      submittedAt: j.submittedAt,
      startedAt: j.startedAt ?? null,
      finishedAt: j.finishedAt ?? null,
    });
    for (const h of j.history) this.s.insertHistory.run(j.id, h.status, h.at);
  }
}
