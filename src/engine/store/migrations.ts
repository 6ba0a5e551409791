/**
 * The store's schema, versioned with `PRAGMA user_version`. Each migration moves the schema from
 * version `i` to `i + 1` (its 1-based position in the list). Append new ones at the end; never edit
 * or reorder one that has shipped, since homes out there already ran it.
 */
import type Database from 'better-sqlite3';

export interface Migration {
  /** What it does, for the maintainer reading a bug report that names the version. */
  readonly description: string;
  readonly up: (db: Database.Database) => void;
}

const ACTIVE = `('submitted', 'provisioning', 'downloading', 'running', 'uploading')`;

/** The SQL list of active (non-final) statuses, matching the `runs_active` partial index. */
export const ACTIVE_STATUSES_SQL = ACTIVE;

export const MIGRATIONS: readonly Migration[] = [
  {
    description: 'runs, jobs, status history, logs, run-name counters',
    up: (db) =>
      db.exec(`
        CREATE TABLE runs (
          name         TEXT PRIMARY KEY,
          workflow     TEXT NOT NULL,
          owner        TEXT NOT NULL,
          backend      TEXT NOT NULL,
          repo         TEXT NOT NULL,          -- JSON RepoInfo
          repo_root    TEXT NOT NULL,          -- repo.root, for latestSuccessfulJob
          args         TEXT NOT NULL,          -- JSON string[]
          tag          TEXT,
          status       TEXT NOT NULL,          -- aggregate of the jobs, updated with them
          submitted_at INTEGER NOT NULL,
          finished_at  INTEGER,
          pid          INTEGER,
          hostname     TEXT
        );
        -- dstack ps: newest first with a LIMIT, and the active runs however old.
        CREATE INDEX runs_by_time ON runs (submitted_at);
        CREATE INDEX runs_active ON runs (submitted_at) WHERE status IN ${ACTIVE};

        CREATE TABLE jobs (
          id           TEXT PRIMARY KEY,       -- <run>/<workflow>
          run          TEXT NOT NULL REFERENCES runs (name) ON DELETE CASCADE,
          idx          INTEGER NOT NULL,
          workflow     TEXT NOT NULL,
          spec         TEXT NOT NULL,          -- JSON JobSpec
          deps         TEXT NOT NULL,          -- JSON JobId[]
          status       TEXT NOT NULL,
          exit_code    INTEGER,
          reason       TEXT,
          handle       TEXT,                   -- JSON BackendHandle
          manifest     TEXT,                   -- JSON Manifest
          submitted_at INTEGER NOT NULL,
          started_at   INTEGER,
          finished_at  INTEGER,
          UNIQUE (run, idx)
        );
        CREATE INDEX jobs_done ON jobs (workflow, finished_at) WHERE status = 'done';

        CREATE TABLE job_status_history (
          id     INTEGER PRIMARY KEY,
          job    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
          status TEXT NOT NULL,
          at     INTEGER NOT NULL
        );
        CREATE INDEX history_by_job ON job_status_history (job, id);

        CREATE TABLE logs (
          job    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
          seq    INTEGER NOT NULL,
          at     INTEGER NOT NULL,
          stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
          data   BLOB NOT NULL,
          PRIMARY KEY (job, seq)
        );

        CREATE TABLE name_counters (
          prefix TEXT PRIMARY KEY,
          next   INTEGER NOT NULL
        ) WITHOUT ROWID;
      `),
  },
  {
    description: 'fingerprints and their parts on jobs, run snapshots, the file-hash stat cache, tags',
    up: (db) =>
      db.exec(`
        ALTER TABLE jobs ADD COLUMN fingerprint TEXT;
        ALTER TABLE jobs ADD COLUMN fingerprint_parts TEXT;   -- JSON FingerprintParts
        -- A cache hit: the newest done job with this fingerprint.
        CREATE INDEX jobs_by_fingerprint ON jobs (fingerprint, finished_at) WHERE status = 'done';
        -- --explain: the newest fingerprinted job of a workflow.
        CREATE INDEX jobs_fingerprinted ON jobs (workflow, submitted_at) WHERE fingerprint IS NOT NULL;

        ALTER TABLE runs ADD COLUMN snapshot TEXT;            -- content hash of the snapshot manifest object

        -- (device, inode) → the content hash seen at (size, mtime): an unchanged tree is not re-read.
        CREATE TABLE file_hashes (
          dev      INTEGER NOT NULL,
          ino      INTEGER NOT NULL,
          size     INTEGER NOT NULL,
          mtime_ns INTEGER NOT NULL,
          hash     TEXT NOT NULL,
          PRIMARY KEY (dev, ino)
        ) WITHOUT ROWID;

        -- A tag pins an artifact set: a run's (merged) artifacts, or local folders. The manifest is a
        -- copy, so the tag outlives the run it came from.
        CREATE TABLE tags (
          name       TEXT PRIMARY KEY,
          run        TEXT,
          manifest   TEXT NOT NULL,                         -- JSON Manifest
          created_at INTEGER NOT NULL
        );
      `),
  },
  {
    description: "a reuse's origin and an ending error's code as columns of their own; runs by project",
    up: (db) =>
      db.exec(`
        -- The job whose artifacts a reuse took: it was encoded in reason as 'cached: <job>' before.
        ALTER TABLE jobs ADD COLUMN cached_from TEXT;
        UPDATE jobs SET cached_from = substr(reason, 9), reason = NULL WHERE reason LIKE 'cached: %';
        -- The code of the error that ended the job (DS0320…): it decides the exit status of \`logs -f\`.
        ALTER TABLE jobs ADD COLUMN error_code TEXT;
        UPDATE jobs SET error_code = substr(reason, 1, 6) WHERE reason GLOB 'DS[0-9][0-9][0-9][0-9]: *';
        -- dstack ps in a project: its newest runs.
        CREATE INDEX runs_by_project ON runs (repo_root, submitted_at);
      `),
  },
  {
    description: 'claims on fingerprints being produced (one producer per fingerprint across processes); a job’s published ports',
    up: (db) =>
      db.exec(`
        -- The job producing a fingerprint right now, and its process: another run that needs the
        -- same fingerprint waits for it and reuses its artifacts instead of running it again.
        CREATE TABLE claims (
          fingerprint TEXT PRIMARY KEY,
          job         TEXT NOT NULL,
          run         TEXT NOT NULL,
          pid         INTEGER NOT NULL,
          hostname    TEXT NOT NULL,
          claimed_at  INTEGER NOT NULL
        ) WITHOUT ROWID;
        -- JSON [{ "port": N, "url": "http://…" }]: where a job's published ports are reached.
        ALTER TABLE jobs ADD COLUMN ports TEXT;
      `),
  },
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Thrown when the file was written by a newer dstack; sqlite.ts turns it into a DstackError. */
export class NewerSchemaError extends Error {
  constructor(readonly found: number) {
    super(`store schema version ${found} is newer than this dstack knows (${SCHEMA_VERSION})`);
  }
}

/**
 * Brings the schema up to date. The fast path (already current) is one read with no lock; otherwise
 * everything runs in one IMMEDIATE transaction that re-reads the version, so two processes opening a
 * fresh home at once apply each migration exactly once (the second waits, then finds nothing to do).
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number {
  const version = (): number => db.pragma('user_version', { simple: true }) as number;
  const current = version();
  if (current > migrations.length) throw new NewerSchemaError(current);
  if (current === migrations.length) return current;
  db.transaction(() => {
    const from = version();
    if (from > migrations.length) throw new NewerSchemaError(from);
    for (let i = from; i < migrations.length; i++) (migrations[i] as Migration).up(db);
    // PRAGMA takes no bound parameters; the value is our own integer.
    db.pragma(`user_version = ${migrations.length}`);
  }).immediate();
  return migrations.length;
}
