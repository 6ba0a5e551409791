/**
 * System errors that the machine, not dstack, causes — a full disk, a read-only file system — as
 * coded errors (exit 3) that say where and what to do, wherever they surface: storing artifacts,
 * writing logs, copying the code, the database (whose own codes are mapped in store/sqlite-errors.ts).
 */
import { dirname } from 'node:path';
import { DstackError, isDstackError } from './errors.js';

const spaceHint = (path: string | undefined): string =>
  `free some space on the disk holding ${path ? dirname(path) : 'the dstack home'}, then try again (\`dstack prune\` removes old runs and the files no run refers to)`;

/** A DstackError for ENOSPC/EDQUOT/EROFS, or undefined when `e` is anything else. */
export function diskError(e: unknown, doing?: string): DstackError | undefined {
  if (isDstackError(e)) return undefined;
  const err = e as NodeJS.ErrnoException | undefined;
  const where = typeof err?.path === 'string' ? ` (${err.path})` : '';
  const during = doing ? ` while ${doing}` : '';
  switch (err?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new DstackError('DS0320', `no space left on the disk${during}${where}`, {
        hint: spaceHint(err.path),
        cause: e,
      });
    case 'EROFS':
      return new DstackError('DS0321', `the file system is read-only${during}${where}`, {
        hint: 'point DSTACK_HOME at a writable folder, or remount it read-write; `dstack ps`, `logs`, `ls` and `cp` work on a read-only home',
        cause: e,
      });
    default:
      return undefined;
  }
}

/** `e` itself, or its coded form when it is a disk error. */
export const withDiskError = (e: unknown, doing?: string): unknown => diskError(e, doing) ?? e;
