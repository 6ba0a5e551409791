/**
 * The run store on SQLite (better-sqlite3, synchronous). One file, `store.db`, in the dstack home;
 * WAL so readers (`dstack ps`, `logs -f`) never block the writer, and a busy timeout so several
 * dstack processes at once wait their turn instead of failing. The focused stores (runs, logs, the
 * cache index, the stat cache, tags, prune) share the one connection and are made when first used,
 * so `dstack ps` prepares only the statements it runs.
 */
import { accessSync, chmodSync, closeSync, constants, existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DstackError } from '../errors.js';
import { Connection } from './connection.js';
import { migrate, SCHEMA_VERSION } from './migrations.js';
import type { RandomSource } from './names.js';
import { SqliteCacheIndex } from './sqlite-cache.js';
import { SqliteClaims } from './sqlite-claims.js';
import { BUSY_TIMEOUT_MS, toStoreError } from './sqlite-errors.js';
import { SqliteFileHashes } from './sqlite-file-hashes.js';
import { SqliteImporter } from './sqlite-import.js';
import { SqliteLogs } from './sqlite-logs.js';
import { SqlitePrune } from './sqlite-prune.js';
import { SqliteRuns } from './sqlite-runs.js';
import { keepReserve, releaseReserve } from './reserve.js';
import { SqliteTags } from './sqlite-tags.js';
import type { CacheIndex, FileHashStore, FingerprintClaims, LogStore, PruneQueries, RunImporter, RunRecords, Store, TagStore } from './types.js';

export { DEFAULT_PS_LIMIT } from './sqlite-runs.js';

export const STORE_FILE = 'store.db';

export interface OpenStoreOptions {
  /** Picks run-name prefixes; tests narrow it to force counter contention. */
  readonly random?: RandomSource;
  /** ms since epoch; tests pin it. */
  readonly now?: () => number;
  /**
   * `read`: the command only reads (ps, logs, ls, cp): when the home cannot be written (a
   * read-only mount, no permission), the store is opened read-only instead of failing.
   */
  readonly access?: 'read' | 'write';
}

/**
 * Opens (creating if needed) the store in `home`: the folder is made 0700 and `store.db` 0600 when
 * they are new, since runs record commands, env values and remote handles. Migrates the schema.
 * Failures a user can hit (permissions, disk full, a lock held too long, a damaged file) throw a
 * coded error naming the file.
 */
export function openStore(home: string, options: OpenStoreOptions = {}): Store {
  const path = join(home, STORE_FILE);
  try {
    return new SqliteStore(openWritable(home, path), path, options, false);
  } catch (e) {
    const error = toStoreError(e, path);
    // A command that writes (`rm`, `prune`: how space is given back) may spend the home's reserve to open it.
    if (options.access !== 'read' && diskFull(error) && releaseReserve(home)) {
      try {
        return new SqliteStore(openWritable(home, path), path, options, false);
      } catch (again) {
        throw toStoreError(again, path);
      }
    }
    // A command that only reads works on what is there when the home cannot be written, or its disk is full.
    const readInstead = cannotWrite(error) || diskFull(error);
    if (options.access !== 'read' || !readInstead || !existsSync(path)) throw (cannotWrite(error) && readOnlyHome(home, e)) || error;
  }
  try {
    return new SqliteStore(openReadOnly(path), path, options, true);
  } catch (e) {
    throw toStoreError(e, path);
  }
}

/** The read-only fallback is for a home we may not write, nothing else (a damaged file stays an error). */
function cannotWrite(e: unknown): boolean {
  const code = (e as { code?: string; cause?: { code?: string } }).cause?.code ?? (e as { code?: string }).code;
  return (
    code === 'DS0321' ||
    code === 'EROFS' ||
    code === 'EACCES' ||
    code === 'EPERM' ||
    (typeof code === 'string' && (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM'))
  );
}

/** A full disk, as the store met it (sqlite-errors.ts): no room for the database, its WAL or its -shm file. */
const diskFull = (e: unknown): boolean => (e as { code?: string }).code === 'DS0320';

/** DS0321 when the home itself cannot be written (a read-only mount): the clearest thing to say. */
function readOnlyHome(home: string, cause: unknown): DstackError | undefined {
  try {
    accessSync(home, constants.W_OK);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EROFS' && code !== 'EACCES' && code !== 'EPERM') return undefined;
    return new DstackError('DS0321', `the dstack home ${home} cannot be written (${code})`, {
      hint: '`dstack ps`, `logs`, `ls` and `cp` work on a read-only home; to run, remount it read-write or point DSTACK_HOME at a writable folder',
      cause,
    });
  }
}

function openWritable(home: string, path: string): Database.Database {
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
    // Takes effect only on a new, empty file, and only before WAL writes its header: rows deleted
    // later (a run's logs) can then be given back to the disk cheaply (see SqlitePrune).
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    migrate(db);
    keepReserve(home);
    return db;
  } catch (e) {
    db?.close();
    throw e;
  }
}

/**
 * A WAL database opens read-only only when its -shm file exists or can be created; on a read-only
 * mount after a clean close neither holds, so the file is opened `immutable` (nothing can change
 * it there). URI file names are off by default in better-sqlite3's build; SQLITE_USE_URI switches
 * them on when the addon first loads, which is why the flag is set before any database is opened.
 */
function openReadOnly(path: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    try {
      db = new Database(path, { readonly: true, fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
      db.pragma('user_version', { simple: true });
    } catch {
      db?.close();
      const uri = `file:${path.split('/').map(encodeURIComponent).join('/')}?immutable=1`;
      db = new Database(uri, { readonly: true, fileMustExist: true });
    }
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== SCHEMA_VERSION) migrate(db); // throws: it cannot write; a newer schema says so
    return db;
  } catch (e) {
    db?.close();
    throw e;
  }
}

// Before the addon loads (the first `new Database`), see openReadOnly.
process.env.SQLITE_USE_URI ??= '1';

class SqliteStore implements Store {
  readonly readOnly: boolean;
  readonly path: string;
  private readonly c: Connection;
  private readonly random: RandomSource | undefined;
  #runs?: RunRecords;
  #logs?: LogStore;
  #cache?: CacheIndex;
  #fileHashes?: FileHashStore;
  #tags?: TagStore;
  #prune?: PruneQueries;
  #importer?: RunImporter;
  #claims?: FingerprintClaims;

  constructor(db: Database.Database, path: string, options: OpenStoreOptions, readOnly: boolean) {
    this.path = path;
    this.readOnly = readOnly;
    this.random = options.random;
    this.c = new Connection({ db, path, now: options.now ?? Date.now, readOnly });
  }

  get runs(): RunRecords {
    return (this.#runs ??= new SqliteRuns(this.c, this.random));
  }
  get logs(): LogStore {
    return (this.#logs ??= new SqliteLogs(this.c));
  }
  get cache(): CacheIndex {
    return (this.#cache ??= new SqliteCacheIndex(this.c));
  }
  get fileHashes(): FileHashStore {
    return (this.#fileHashes ??= new SqliteFileHashes(this.c));
  }
  get tags(): TagStore {
    return (this.#tags ??= new SqliteTags(this.c));
  }
  get prune(): PruneQueries {
    return (this.#prune ??= new SqlitePrune(this.c));
  }
  get importer(): RunImporter {
    return (this.#importer ??= new SqliteImporter(this.c));
  }
  get claims(): FingerprintClaims {
    return (this.#claims ??= new SqliteClaims(this.c));
  }

  close(): void {
    if (this.c.db.open) this.c.db.close();
  }
}
