/**
 * Reads a project file (`.dstack/workflows.yaml`, `variables.yaml`, …) the way a file the user
 * controls must be read: only a regular file, and only up to a size cap (issue 8: a FIFO named
 * `workflows.yaml` hung dstack forever; a directory, or a symlink to `/dev/zero`, ended in exit 70
 * after reading 618 MB).
 *
 * The file is opened first and checked with `fstat` on the open descriptor, so what is checked is
 * what is read (a `stat` before `open` could be raced by a rename). `O_NONBLOCK` makes opening a
 * FIFO return at once instead of waiting for a writer; it changes nothing for a regular file.
 * Symlinks are followed on purpose: a workflows file linked from elsewhere in the repository is
 * legitimate, and what it points to still has to be a regular file.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';

/**
 * 1 MiB: about 8,000 workflows in one file. Parsing that takes ~160 MB of memory; the cap keeps any
 * project file's cost bounded, whatever is put in its place.
 */
export const MAX_FILE_BYTES = 1 << 20;

export type ReadResult =
  | { readonly ok: true; readonly text: string }
  | { readonly ok: false; readonly reason: string; readonly hint: string };

const kindOf = (st: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string =>
  st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a regular file';

/** `rel` under `root`, as text, or why it cannot be read. Never blocks on a special file. */
export function readProjectFile(root: string, rel: string, maxBytes = MAX_FILE_BYTES): ReadResult {
  let fd: number;
  try {
    fd = openSync(join(root, rel), constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    return failure(e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { ok: false, reason: `it is ${kindOf(st)}`, hint: `make ${rel} a regular file, or remove it` };
    const tooBig = (): ReadResult => ({
      ok: false,
      reason: `it is larger than ${maxBytes / 1024} KiB`,
      hint: 'split the workflows over several files under .dstack/workflows/',
    });
    if (st.size > maxBytes) return tooBig();
    // Read to the end, but never past the cap: the size seen by fstat may change while reading.
    const buf = Buffer.allocUnsafe(maxBytes + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > maxBytes) return tooBig();
    }
    return { ok: true, text: buf.toString('utf8', 0, n) };
  } catch (e) {
    return failure(e);
  } finally {
    closeSync(fd);
  }
}

function failure(e: unknown): ReadResult {
  const code = (e as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ENOENT':
      return { ok: false, reason: 'it does not exist (a dangling symlink?)', hint: 'fix or remove the link' };
    case 'EACCES':
    case 'EPERM':
      return { ok: false, reason: 'permission denied', hint: 'make it readable by you' };
    case 'ELOOP':
      return { ok: false, reason: 'its symlinks loop', hint: 'fix or remove the link' };
    case 'ENXIO':
      return { ok: false, reason: 'it is a socket or a device', hint: 'make it a regular file, or remove it' };
    case 'EISDIR':
      return { ok: false, reason: 'it is a directory', hint: 'remove it or rename it' };
    default:
      return { ok: false, reason: code ? `it cannot be read (${code})` : 'it cannot be read', hint: 'check the file' };
  }
}
