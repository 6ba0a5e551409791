/**
 * What prune asks of the store on SQLite: which runs may go, which objects records still point at,
 * and giving the space of deleted rows back (a run's logs can be hundreds of MB).
 */
import { statSync } from 'node:fs';
import type { Manifest } from '../objects.js';
import type { ContentHash, FingerprintParts } from '../types.js';
import { asContentHash } from '../types.js';
import type { Connection } from './connection.js';
import { ACTIVE_STATUSES_SQL } from './migrations.js';
import type { ProjectScope, RunRecord } from './records.js';
import { decodeManifest, isFingerprintParts, RUN_COLUMNS, toRun, type RunRow } from './rows.js';
import type { PruneQueries, SpaceReclaimed } from './types.js';

/** Free pages worth a VACUUM of a database not yet in incremental mode (which then converts it). */
const VACUUM_AT_BYTES = 4 << 20;

const PRUNABLE = `SELECT ${RUN_COLUMNS} FROM runs
  WHERE submitted_at < @before AND status NOT IN ${ACTIVE_STATUSES_SQL}
    AND (@project IS NULL OR repo_root = @project)
    AND tag IS NULL AND name NOT IN (SELECT run FROM tags WHERE run IS NOT NULL)
  ORDER BY submitted_at`;

/** A column of every record, but for the runs in `@except` or only those in `@only` (JSON arrays of names). */
const scoped = (table: string, column: string): string =>
  `SELECT ${column} FROM ${table} WHERE ${column} IS NOT NULL
     AND (@except IS NULL OR ${table === 'runs' ? 'name' : 'run'} NOT IN (SELECT value FROM json_each(@except)))
     AND (@only IS NULL OR ${table === 'runs' ? 'name' : 'run'} IN (SELECT value FROM json_each(@only)))`;

export class SqlitePrune implements PruneQueries {
  private readonly s;

  constructor(private readonly c: Connection) {
    const p = (sql: string) => c.prepare(sql);
    this.s = {
      prunable: p(PRUNABLE),
      manifests: p(scoped('jobs', 'manifest')).pluck(),
      parts: p(scoped('jobs', 'fingerprint_parts')).pluck(),
      snapshots: p(scoped('runs', 'snapshot')).pluck(),
      tagManifests: p('SELECT name, manifest FROM tags'),
    };
  }

  listPrunableRuns(before: number, scope: ProjectScope = {}): readonly RunRecord[] {
    return this.c.guard(() => (this.s.prunable.all({ before, project: scope.project ?? null }) as RunRow[]).map((r) => toRun(this.c, r)));
  }

  /**
   * Every object a record still points at. Read in one transaction, so a concurrent run cannot slip
   * a reference in between two of the reads; prune still must not delete objects newer than the
   * read (a run may be writing objects it has not recorded yet) — see src/artifacts prune.
   */
  referencedObjects(options: { readonly except?: readonly string[]; readonly only?: readonly string[] } = {}): Set<ContentHash> {
    const params = {
      except: options.except ? JSON.stringify(options.except) : null,
      only: options.only ? JSON.stringify(options.only) : null,
    };
    return this.c.read(() => {
      const out = new Set<ContentHash>();
      const addManifest = (m: Manifest): void => {
        for (const e of m.entries) if (e.type === 'file') out.add(e.hash);
      };
      for (const m of this.s.manifests.all(params) as string[]) addManifest(decodeManifest(this.c, m, 'a job manifest'));
      if (!options.only) {
        for (const t of this.s.tagManifests.all() as { name: string; manifest: string }[]) addManifest(decodeManifest(this.c, t.manifest, `tag ${t.name} manifest`));
      }
      for (const h of this.s.snapshots.all(params) as string[]) out.add(asContentHash(h));
      for (const p of this.s.parts.all(params) as string[]) {
        const listing = this.c.json<FingerprintParts>(p, 'a job fingerprint', isFingerprintParts).inputsListing;
        if (listing) out.add(listing);
      }
      return out;
    });
  }

  /**
   * Deleted rows leave free pages in the file. A database created by this dstack is in incremental
   * auto-vacuum mode: the free pages are cut off the end, cheaply. An older one is converted by one
   * VACUUM, done only when enough is free to be worth rewriting the file. Then the write-ahead log
   * is checkpointed and truncated, so the space really returns to the disk. Nothing freed: nothing
   * done. Best effort: a busy database (a run writing logs) or a full disk leaves it for the next prune.
   */
  reclaimSpace(): SpaceReclaimed {
    const before = this.size();
    if (this.c.readOnly) return { before, after: before };
    try {
      const db = this.c.db;
      const free = (db.pragma('freelist_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number);
      if (free === 0) return { before, after: before };
      if (db.pragma('auto_vacuum', { simple: true }) === 2) db.pragma('incremental_vacuum');
      else if (free >= VACUUM_AT_BYTES) {
        db.pragma('auto_vacuum = INCREMENTAL');
        db.exec('VACUUM');
      }
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // Space not given back now is given back by the next prune; nothing is lost.
    }
    this.c.keepReserve();
    return { before, after: this.size() };
  }

  private size(): number {
    const bytes = (p: string): number => {
      try {
        return statSync(p).size;
      } catch {
        return 0;
      }
    };
    return bytes(this.c.path) + bytes(`${this.c.path}-wal`);
  }
}
