/**
 * SQLite failures a user can cause, as coded errors naming the file and the next step. Anything
 * else is our bug and stays as it is (an internal error).
 */
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { diskError } from '../disk-errors.js';
import { DstackError } from '../errors.js';
import { NewerSchemaError } from './migrations.js';

export const BUSY_TIMEOUT_MS = 5000;

const verifyHint = (path: string): string =>
  `\`dstack store verify\` checks it and names what is damaged; move ${path} aside (with its -wal and -shm files) to start afresh, losing the run history in it`;

function fromSqlite(code: string, path: string, e: unknown): DstackError | undefined {
  const dir = dirname(path);
  const err = (c: ConstructorParameters<typeof DstackError>[0], what: string, hint: string): DstackError =>
    new DstackError(c, `${what}: ${path}`, { hint, cause: e });
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
    return err(
      'DS0300',
      `the run store stayed locked by another process for more than ${BUSY_TIMEOUT_MS / 1000} s`,
      'try again; if it keeps happening, look for a stuck dstack process (`ps aux | grep dstack`)',
    );
  // SHMSIZE: no room to make or grow the -shm file beside the store.
  if (code === 'SQLITE_FULL' || code === 'SQLITE_IOERR_WRITE' || code === 'SQLITE_IOERR_FSYNC' || code === 'SQLITE_IOERR_TRUNCATE' || code === 'SQLITE_IOERR_SHMSIZE')
    return err('DS0320', 'the disk holding the run store is full', `free some space on the disk holding ${dir} (\`dstack prune\` removes old runs)`);
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return err('DS0322', 'the run store is damaged', verifyHint(path));
  if (code.startsWith('SQLITE_READONLY'))
    return err('DS0321', 'the run store is read-only', `this command needs to write; check the owner and permissions of ${dir}, or whether its disk is mounted read-only`);
  if (code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH')
    return err('DS0300', 'the run store cannot be opened', `check the owner and permissions of ${dir}`);
  if (code.startsWith('SQLITE_IOERR')) return err('DS0300', `the run store could not be read or written (${code})`, `check the disk holding ${dir}`);
  return undefined;
}

/** `e` as a coded error when a user can cause it; otherwise `e` unchanged. */
export function toStoreError(e: unknown, path: string): unknown {
  if (e instanceof DstackError) return e;
  if (e instanceof NewerSchemaError)
    return new DstackError('DS0300', `${path} was written by a newer dstack (${e.message})`, {
      hint: 'upgrade dstack, or point DSTACK_HOME at another folder',
      cause: e,
    });
  if (e instanceof Database.SqliteError) return fromSqlite(e.code, path, e) ?? e;
  const disk = diskError(e, `opening the run store ${path}`);
  if (disk) return disk;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EACCES' || code === 'EPERM' || code === 'ENOTDIR')
    return new DstackError('DS0300', `cannot create the run store ${path} (${code})`, {
      hint: 'check the permissions of the dstack home, or set DSTACK_HOME to a writable folder',
      cause: e,
    });
  return e;
}

/** A record whose stored JSON no longer parses: the file is readable, one value in it is not. */
export function damagedRecord(path: string, what: string, e?: unknown): DstackError {
  return new DstackError('DS0323', `the run store holds a damaged record (${what}): ${path}`, {
    hint: verifyHint(path),
    ...(e === undefined ? {} : { cause: e }),
  });
}
