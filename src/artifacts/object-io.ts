/**
 * Byte plumbing for the object stores: reading a file through its handle, writing all of a buffer,
 * hashing a file without following a symlink, and copying an object out verified.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, unlink, type FileHandle } from 'node:fs/promises';
import type { ObjectStore } from '../engine/objects.js';
import { openFileNoFollow, symlinkRefused } from '../engine/safe-fs.js';
import { asContentHash, type ContentHash } from '../engine/types.js';
import { CHUNK_SIZE } from './hash.js';

/**
 * A file's bytes in large chunks, read through its handle. (A handle's own read and write streams
 * with `autoClose: false` keep it referenced, and its close() then never resolves: Node 20.)
 */
export async function* readChunks(fh: FileHandle, signal?: AbortSignal): AsyncGenerator<Buffer> {
  for (;;) {
    signal?.throwIfAborted();
    const buf = Buffer.allocUnsafe(CHUNK_SIZE);
    const { bytesRead } = await fh.read(buf, 0, CHUNK_SIZE, null);
    if (bytesRead === 0) return;
    yield bytesRead === CHUNK_SIZE ? buf : buf.subarray(0, bytesRead);
  }
}

/**
 * Writes the object `f.hash` to `to`, a new file (never through a symlink there), verified as it
 * streams: when the store finds it missing or damaged, nothing is left at `to` and the coded error
 * (DS0303/DS0304) is thrown.
 */
export async function copyObjectTo(objects: ObjectStore, f: { readonly hash: ContentHash; readonly size: number; readonly mode: number }, to: string): Promise<void> {
  const fh = await open(to, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code === 'ELOOP' || e.code === 'EEXIST') {
      if ((await lstat(to).catch(() => undefined))?.isSymbolicLink()) throw symlinkRefused(to, undefined, 'an artifact file');
    }
    throw e;
  });
  try {
    for await (const chunk of objects.get(f.hash, { size: f.size })) await writeAll(fh, chunk as Buffer);
    await fh.chmod(f.mode);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(to).catch(() => undefined);
    throw e;
  }
  await fh.close();
}

export async function writeAll(fh: FileHandle, b: Buffer): Promise<void> {
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off);
    off += bytesWritten;
  }
}

/** Hash and size of a file, read through a descriptor opened without following a symlink. */
export async function hashOpen(path: string): Promise<{ readonly hash: ContentHash; readonly size: number }> {
  const fh = await openFileNoFollow(path, `artifact file '${path}'`);
  try {
    const h = createHash('sha256');
    let size = 0;
    for await (const b of readChunks(fh)) {
      size += b.length;
      h.update(b);
    }
    return { hash: asContentHash(h.digest('hex')), size };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

