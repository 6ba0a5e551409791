/** The cache index on SQLite: fingerprints live on the jobs that carry them. */
import type { ContentHash, Fingerprint, FingerprintParts, JobId, JobSpec, JobStatus } from '../types.js';
import { asJobId, asRunName } from '../types.js';
import type { Connection } from './connection.js';
import type { CacheHit, FingerprintedJob } from './records.js';
import { decodeManifest, isFingerprintParts } from './rows.js';
import type { CacheIndex } from './types.js';

export class SqliteCacheIndex implements CacheIndex {
  private readonly s;

  constructor(private readonly c: Connection) {
    const p = (sql: string) => c.prepare(sql);
    this.s = {
      setFingerprint: p('UPDATE jobs SET fingerprint = ?, fingerprint_parts = ? WHERE id = ?'),
      // The newest done job with the fingerprint, and who really made its artifacts: the job it was
      // reused from while that job's record exists, else itself (its run was removed; the
      // artifacts live on in this record, and a message must not name a run that is gone).
      hit: p(
        `SELECT j.id, j.manifest, coalesce(o.id, j.id) AS origin, coalesce(o.run, j.run) AS origin_run
         FROM jobs j LEFT JOIN jobs o ON o.id = j.cached_from
         WHERE j.fingerprint = ? AND j.status = 'done' AND j.manifest IS NOT NULL AND j.id <> ?
         ORDER BY j.finished_at DESC, j.rowid DESC LIMIT 1`,
      ),
      lastFingerprinted: p(
        `SELECT j.id, j.status, j.fingerprint, j.fingerprint_parts, j.spec FROM jobs j JOIN runs r ON r.name = j.run
         WHERE j.workflow = ? AND j.fingerprint IS NOT NULL AND r.repo_root = ?
         ORDER BY j.submitted_at DESC, j.rowid DESC LIMIT 1`,
      ),
      // A hash is 64 hex digits: found in a manifest's JSON only as that object's `hash`.
      forgetHitsWith: p(
        `UPDATE jobs SET fingerprint = NULL
         WHERE fingerprint IS NOT NULL AND manifest IS NOT NULL AND instr(manifest, ?) > 0`,
      ),
    };
  }

  setJobFingerprint(id: JobId, fingerprint: Fingerprint, parts: FingerprintParts): void {
    const changes = this.c.guard(() => this.s.setFingerprint.run(fingerprint, JSON.stringify(parts), id).changes);
    this.c.mustChange(changes, `setJobFingerprint(${id})`);
  }

  findCacheHit(fingerprint: Fingerprint, options: { readonly exclude?: JobId } = {}): CacheHit | undefined {
    const row = this.c.guard(() => this.s.hit.get(fingerprint, options.exclude ?? '')) as
      | { id: string; manifest: string; origin: string; origin_run: string }
      | undefined;
    if (!row) return undefined;
    return {
      job: asJobId(row.id),
      manifest: decodeManifest(this.c, row.manifest, `job ${row.id} manifest`),
      origin: { job: asJobId(row.origin), run: asRunName(row.origin_run) },
    };
  }

  forgetCacheHitsWith(hash: ContentHash): number {
    if (!/^[0-9a-f]{64}$/.test(hash)) return 0;
    return this.c.guard(() => this.s.forgetHitsWith.run(hash).changes);
  }

  lastFingerprintedJob(workflow: string, repoRoot: string): FingerprintedJob | undefined {
    const row = this.c.guard(() => this.s.lastFingerprinted.get(workflow, repoRoot)) as
      | { id: string; status: string; fingerprint: string; fingerprint_parts: string | null; spec: string }
      | undefined;
    if (!row || row.fingerprint_parts === null) return undefined;
    const what = `job ${row.id}`;
    const spec = this.c.json<Pick<JobSpec, 'inputs'>>(row.spec, `${what} spec`, (v) => typeof v === 'object' && v !== null);
    return {
      id: asJobId(row.id),
      status: row.status as JobStatus,
      fingerprint: row.fingerprint as Fingerprint,
      parts: this.c.json<FingerprintParts>(row.fingerprint_parts, `${what} fingerprint`, isFingerprintParts),
      ...(spec.inputs !== undefined && { inputs: spec.inputs }),
    };
  }
}
