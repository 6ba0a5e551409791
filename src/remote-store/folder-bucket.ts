/**
 * A bucket in a plain shared folder (an NFS or SMB mount, or any path): the same layout as in S3,
 * a key `a/b/c` being the file `ROOT/a/b/c`. For teams without a cloud:
 * `dstack config folder --name team --path /mnt/team`.
 *
 * Every write goes to `ROOT/.tmp/` first (opened O_EXCL, written, fsynced) and is then put in place
 * in one step, so a reader on another machine never sees half a file: `link(2)` for a create-only
 * write (it fails with EEXIST when the name is taken, even over NFS, so of two writers racing
 * exactly one wins), `rename(2)` otherwise. Filesystems without hard links (some SMB mounts) get
 * an exclusive create of the final name instead, which still lets only one writer win.
 */
import { randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { access, link, mkdir, open, readdir, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { DstackError } from '../engine/errors.js';
import type { Bucket, BucketEntry, ListOptions, PartsOptions, WriteOptions } from './bucket.js';

const TMP = '.tmp';

export class FolderBucket implements Bucket {
  readonly where: string;
  private tmpReady: Promise<unknown> | undefined;

  constructor(readonly root: string) {
    this.where = root;
  }

  private path(key: string): string {
    const parts = key.split('/');
    if (parts.some((p) => p === '' || p === '.' || p === '..' || p.startsWith('.'))) throw new Error(`bad bucket key '${key}'`);
    return join(this.root, ...parts);
  }

  async check(): Promise<void> {
    let st;
    try {
      st = await stat(this.root);
    } catch (e) {
      throw this.unusable('does not exist', e, `create it (or mount the share there), or point the remote elsewhere: dstack config folder --name NAME --path DIR --force`);
    }
    if (!st.isDirectory()) throw this.unusable('is not a folder');
    try {
      await access(this.root, constants.R_OK | constants.W_OK | constants.X_OK);
    } catch (e) {
      throw this.unusable(`cannot be written by this user (${(e as NodeJS.ErrnoException).code})`, e, `check the owner and permissions of ${this.root}`);
    }
  }

  private unusable(why: string, cause?: unknown, hint?: string): DstackError {
    return new DstackError('DS0274', `the shared folder ${this.root} ${why}`, { hint: hint ?? 'check the mount, or configure another folder', cause });
  }

  /** Turns filesystem failures a user can cause into DS0274; anything else is ours. */
  private async guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw this.unusable(`refused ${what} (${code})`, e, `check the owner and permissions of ${this.root}`);
      if (code === 'ENOSPC' || code === 'EDQUOT') throw this.unusable(`is full (${what})`, e, `free some space on the disk holding ${this.root}`);
      if (code === 'EIO' || code === 'ESTALE' || code === 'ENOTCONN') throw this.unusable(`could not be read or written (${code}, ${what})`, e);
      throw e;
    }
  }

  async read(key: string): Promise<Buffer | undefined> {
    return this.guard(`reading ${key}`, async () => {
      try {
        return await readFile(this.path(key));
      } catch (e) {
        if (isMissing(e)) return undefined;
        throw e;
      }
    });
  }

  async stream(key: string): Promise<Readable | undefined> {
    return this.guard(`reading ${key}`, async () => {
      let fh: FileHandle;
      try {
        fh = await open(this.path(key), constants.O_RDONLY | constants.O_NOFOLLOW);
      } catch (e) {
        if (isMissing(e)) return undefined;
        throw e;
      }
      return createReadStream('', { fd: fh, highWaterMark: 1 << 20 });
    });
  }

  async head(key: string): Promise<number | undefined> {
    return this.guard(`reading ${key}`, async () => {
      try {
        const st = await stat(this.path(key));
        return st.isFile() ? st.size : undefined;
      } catch (e) {
        if (isMissing(e)) return undefined;
        throw e;
      }
    });
  }

  async write(key: string, body: Buffer, options: WriteOptions = {}): Promise<boolean> {
    return this.guard(`writing ${key}`, async () => {
      const tmp = await this.tmpFile(async (fh) => {
        await fh.writeFile(body);
      });
      return this.place(tmp, key, options.createOnly === true);
    });
  }

  async writeParts(key: string, parts: AsyncIterable<Buffer>, options: PartsOptions): Promise<boolean> {
    return this.guard(`writing ${key}`, async () => {
      let sent = 0;
      const tmp = await this.tmpFile(async (fh) => {
        for await (const part of parts) {
          options.signal?.throwIfAborted();
          await fh.write(part);
          sent += part.length;
          options.onProgress?.(sent);
        }
        options.beforeCommit();
      });
      return this.place(tmp, key, options.createOnly === true);
    });
  }

  /** A new temp file under ROOT/.tmp, filled by `fill` and fsynced; removed when `fill` throws. */
  private async tmpFile(fill: (fh: FileHandle) => Promise<void>): Promise<string> {
    this.tmpReady ??= mkdir(join(this.root, TMP), { recursive: true });
    await this.tmpReady;
    const tmp = join(this.root, TMP, `${process.pid}-${randomBytes(8).toString('hex')}`);
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fill(fh);
      await fh.sync();
      await fh.close();
    } catch (e) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    return tmp;
  }

  /** Puts the temp file at the key's path: create-only by link, else by rename. Removes the temp file. */
  private async place(tmp: string, key: string, createOnly: boolean): Promise<boolean> {
    const final = this.path(key);
    try {
      await mkdir(dirname(final), { recursive: true });
      if (!createOnly) {
        await rename(tmp, final);
        return true;
      }
      try {
        await link(tmp, final);
        return true;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return false;
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV' && code !== 'EMLINK') throw e;
      }
      // No hard links here: an exclusive create of the final name decides the race, then the
      // content is renamed over the empty file this writer now owns.
      try {
        await (await open(final, 'wx', 0o644)).close();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw e;
      }
      await rename(tmp, final);
      return true;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<BucketEntry> {
    const cut = prefix.lastIndexOf('/');
    const base = cut < 0 ? '' : prefix.slice(0, cut + 1);
    let left = options.maxKeys ?? Infinity;
    for await (const e of this.walk(base, prefix, options.startAfter ?? '')) {
      if (left-- <= 0) return;
      yield e;
    }
  }

  /**
   * Files under the folder of key prefix `base` (`''` or ending in `/`) whose keys start with
   * `prefix` and come after `after`, in S3's key order: a folder sorts as its name followed by `/`,
   * so walking depth-first with that order lists keys sorted. Folders wholly before `after` or
   * outside `prefix` are not entered, so a listing that starts late does not read what it skips.
   */
  private async *walk(base: string, prefix: string, after: string): AsyncGenerator<BucketEntry> {
    const dir = base === '' ? this.root : this.path(base.slice(0, -1));
    let dirents;
    try {
      dirents = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (isMissing(e) || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw e;
    }
    const named = dirents.filter((d) => !d.name.startsWith('.')).map((d) => ({ d, sortKey: d.isDirectory() ? `${d.name}/` : d.name }));
    named.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    for (const { d } of named) {
      const key = `${base}${d.name}`;
      if (d.isDirectory()) {
        const sub = `${key}/`;
        const inPrefix = sub.startsWith(prefix) || prefix.startsWith(sub);
        const reachesAfter = sub > after || after.startsWith(sub);
        if (inPrefix && reachesAfter) yield* this.walk(sub, prefix, after);
      } else if (d.isFile() && key.startsWith(prefix) && key > after) {
        const st = await stat(join(dir, d.name)).catch(() => undefined);
        if (st) yield { key, size: st.size };
      }
    }
  }

  async listFolders(prefix: string): Promise<readonly string[]> {
    const dir = prefix === '' ? this.root : this.path(prefix.replace(/\/$/, ''));
    const dirents = await readdir(dir, { withFileTypes: true }).catch((e: unknown) => {
      if (isMissing(e)) return [];
      throw e;
    });
    return dirents
      .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
      .map((d) => `${prefix}${d.name}/`)
      .sort();
  }

  async remove(key: string): Promise<void> {
    await this.guard(`deleting ${key}`, async () => {
      await unlink(this.path(key)).catch((e: unknown) => {
        if (!isMissing(e)) throw e;
      });
    });
  }

  async close(): Promise<void> {}
}

const isMissing = (e: unknown): boolean => {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};
