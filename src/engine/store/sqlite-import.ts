/**
 * Importing a run made elsewhere (`dstack pull` of a teammate's run from the team bucket): its
 * records written as they are — statuses, times, history, fingerprints, manifests and logs — in one
 * transaction, so `ps`, `ls`, `cp`, `logs` and the cache index see it like a run of this home, or
 * not at all. The name must be free in this home.
 */
import type Database from 'better-sqlite3';
import { DstackError } from '../errors.js';
import type { ImportedLog, JobRecord, RunRecord } from './types.js';

export function importRunInto(db: Database.Database, run: RunRecord, jobs: readonly JobRecord[], logs: Iterable<ImportedLog>): void {
  const exists = db.prepare('SELECT 1 FROM runs WHERE name = ?').pluck();
  const insertRun = db.prepare(
    `INSERT INTO runs (name, workflow, owner, backend, repo, repo_root, args, tag, status, submitted_at, finished_at, pid, hostname, snapshot)
     VALUES (@name, @workflow, @owner, @backend, @repo, @repoRoot, @args, @tag, @status, @submittedAt, @finishedAt, NULL, NULL, NULL)`,
  );
  const insertJob = db.prepare(
    `INSERT INTO jobs (id, run, idx, workflow, spec, deps, status, exit_code, reason, manifest, fingerprint, fingerprint_parts, submitted_at, started_at, finished_at)
     VALUES (@id, @run, @idx, @workflow, @spec, @deps, @status, @exitCode, @reason, @manifest, @fingerprint, @parts, @submittedAt, @startedAt, @finishedAt)`,
  );
  const insertHistory = db.prepare('INSERT INTO job_status_history (job, status, at) VALUES (?, ?, ?)');
  const insertLog = db.prepare('INSERT INTO logs (job, seq, at, stream, data) VALUES (?, ?, ?, ?, ?)');
  db.transaction(() => {
    if (exists.get(run.name)) {
      throw new DstackError('DS0271', `a run named ${run.name} is already in this home`, { hint: 'see it with `dstack ps -a`; remove it first with `dstack rm` if it is a stale copy' });
    }
    insertRun.run({
      name: run.name,
      workflow: run.workflow,
      owner: run.owner,
      backend: run.backend,
      repo: JSON.stringify(run.repo),
      repoRoot: run.repo.root,
      args: JSON.stringify(run.args),
      tag: run.tag ?? null,
      status: run.status,
      submittedAt: run.submittedAt,
      finishedAt: run.finishedAt ?? null,
    });
    for (const j of jobs) {
      insertJob.run({
        id: j.id,
        run: run.name,
        idx: j.index,
        workflow: j.workflow,
        spec: JSON.stringify(j.spec),
        deps: JSON.stringify(j.deps),
        status: j.status,
        exitCode: j.exitCode ?? null,
        reason: j.reason ?? null,
        manifest: j.manifest ? JSON.stringify(j.manifest) : null,
        fingerprint: j.fingerprint ?? null,
        parts: j.fingerprintParts ? JSON.stringify(j.fingerprintParts) : null,
        submittedAt: j.submittedAt,
        startedAt: j.startedAt ?? null,
        finishedAt: j.finishedAt ?? null,
      });
      for (const h of j.history) insertHistory.run(j.id, h.status, h.at);
    }
    const seqs = new Map<string, number>();
    for (const l of logs) {
      const seq = (seqs.get(l.job) ?? 0) + 1;
      seqs.set(l.job, seq);
      insertLog.run(l.job, seq, l.at, l.stream, l.data);
    }
  }).immediate();
}
