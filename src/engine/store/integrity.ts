/**
 * `dstack store verify`'s look at the run store: SQLite's own consistency check, on a read-only
 * connection of its own, so it works on a database too damaged to open for writing (or migrate),
 * and never changes it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { STORE_FILE } from './sqlite.js';

export interface DatabaseCheck {
  readonly path: string;
  /** No database yet: nothing to check. */
  readonly absent?: boolean;
  /** What SQLite reported, one problem per line; empty when it says "ok". */
  readonly problems: readonly string[];
}

/**
 * `PRAGMA integrity_check` (every page, index and constraint), or `quick_check` (no index contents)
 * when `quick`. A file that is not a database at all, or cannot be read, is one problem.
 */
export function checkDatabase(home: string, options: { readonly quick?: boolean } = {}): DatabaseCheck {
  const path = join(home, STORE_FILE);
  if (!existsSync(path)) return { path, absent: true, problems: [] };
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 });
    const rows = db.pragma(options.quick ? 'quick_check' : 'integrity_check') as { integrity_check?: string; quick_check?: string }[];
    const lines = rows.map((r) => r.integrity_check ?? r.quick_check ?? '').filter((l) => l !== '');
    return { path, problems: lines.length === 1 && lines[0] === 'ok' ? [] : lines };
  } catch (e) {
    const code = (e as { code?: string }).code;
    return { path, problems: [`${code ? `${code}: ` : ''}${(e as Error).message}`] };
  } finally {
    db?.close();
  }
}
