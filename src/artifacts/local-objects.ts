/**
 * The local object store: `${home}/objects/sha256/ab/<hash>`, one read-only file per distinct
 * content. Objects appear under their final name only complete and fsynced (written to
 * `objects/tmp/` first, then linked into place), so a crash leaves at most a temp file, and several
 * processes may store the same content at once.
 *
 * Nothing read from here is trusted: every read hashes what it hands out (`get`), or proves the file
 * unchanged since it was last hashed (`verifiedPath`, `link`: see verified.ts). An object found
 * damaged is moved to `objects/quarantine/` and reported (`onFault`), a missing one reported: the
 * run store then forgets the cache hits that referred to it, and the next run re-makes it.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { access, link, lstat, mkdir, open, readdir, rename, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { dirname, join } from 'node:path';
import { DstackError } from '../engine/errors.js';
import { forEachLimit } from '../engine/limit.js';
import type { FileObjectStore, GetOptions, ObjectFault, ObjectInfo, PutOptions } from '../engine/objects.js';
import { openFileNoFollow } from '../engine/safe-fs.js';
import { asContentHash, type ContentHash } from '../engine/types.js';
import { CHUNK_SIZE, isContentHash } from './hash.js';
import { hashOpen, readChunks, writeAll } from './object-io.js';
import { statKey, VerifiedRecords } from './verified.js';

export interface LocalObjectStoreOptions {
  /** The dstack home (`~/.dstack` or `DSTACK_HOME`); objects live under `objects/`. */
  readonly home: string;
  /**
   * Told of every object a read found missing or damaged (a damaged one is already quarantined).
   * The CLI forgets the cache hits that refer to it. Errors it throws are ignored.
   */
  readonly onFault?: (hash: ContentHash, fault: ObjectFault) => void | Promise<void>;
}

const OBJECT_MODE = 0o444;
const IO_CONCURRENCY = 16;

export type CheckResult = 'ok' | ObjectFault;

export class LocalObjectStore implements FileObjectStore {
  readonly home: string;
  readonly dir: string;
  readonly tmpDir: string;
  readonly quarantineDir: string;
  private readonly records: VerifiedRecords;
  private readonly onFault: LocalObjectStoreOptions['onFault'];
  private tmpReady: Promise<unknown> | undefined;
  /** Where this process moved each damaged object it found. */
  readonly quarantined = new Map<ContentHash, string>();

  constructor(options: LocalObjectStoreOptions) {
    this.home = options.home;
    this.dir = join(options.home, 'objects', 'sha256');
    this.tmpDir = join(options.home, 'objects', 'tmp');
    this.quarantineDir = join(options.home, 'objects', 'quarantine');
    this.records = new VerifiedRecords(join(options.home, 'objects', 'verified'));
    this.onFault = options.onFault;
  }

  /** Where the object's file is (or would be). Reading it directly skips verification: use `get`. */
  path(hash: ContentHash): string {
    if (!isContentHash(hash)) throw new DstackError('DS0301', `malformed content hash '${String(hash)}'`);
    return join(this.dir, hash.slice(0, 2), hash);
  }

  async has(hash: ContentHash): Promise<boolean> {
    if (!isContentHash(hash)) return false;
    try {
      await access(this.path(hash));
      return true;
    } catch {
      return false;
    }
  }

  async hasMany(hashes: Iterable<ContentHash>): Promise<Set<ContentHash>> {
    const out = new Set<ContentHash>();
    await forEachLimit([...new Set(hashes)], IO_CONCURRENCY, async (h) => {
      if (await this.has(h)) out.add(h);
    });
    return out;
  }

  async *list(): AsyncIterable<ObjectInfo> {
    for (const shard of (await readdir(this.dir).catch(() => [] as string[])).sort()) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      for (const name of (await readdir(join(this.dir, shard)).catch(() => [] as string[])).sort()) {
        if (!isContentHash(name) || name.slice(0, 2) !== shard) continue;
        const st = await lstat(join(this.dir, shard, name)).catch(() => undefined);
        if (st?.isFile()) yield { hash: asContentHash(name), size: st.size };
      }
    }
  }

  get(hash: ContentHash, options: GetOptions = {}): Readable {
    return Readable.from(this.verifiedChunks(hash, options), { objectMode: false, highWaterMark: CHUNK_SIZE });
  }

  /** The object's bytes; throws (after the last chunk, before ending) when they are not `hash`'s. */
  private async *verifiedChunks(hash: ContentHash, options: GetOptions): AsyncGenerator<Buffer> {
    const fh = await this.openObject(hash);
    try {
      const before = await fh.stat({ bigint: true });
      if (!before.isFile() || (options.size !== undefined && before.size !== BigInt(options.size))) {
        throw await this.damaged(hash, before, `it holds ${before.size} bytes, not ${options.size ?? '?'}`);
      }
      const h = createHash('sha256');
      let size = 0;
      for await (const chunk of readChunks(fh, options.signal)) {
        size += chunk.length;
        h.update(chunk);
        yield chunk;
      }
      const got = h.digest('hex');
      if (got !== hash) throw await this.damaged(hash, before, `its bytes hash to ${got.slice(0, 12)}…`);
      const after = await fh.stat({ bigint: true });
      if (statKey(after) === statKey(before) && BigInt(size) === after.size) await this.records.record(hash, after);
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  private async openObject(hash: ContentHash): Promise<FileHandle> {
    try {
      return await openFileNoFollow(this.path(hash), `object ${hash}`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw await this.missing(hash);
      if (e instanceof DstackError) throw await this.damaged(hash, undefined, 'it is a symlink');
      throw e;
    }
  }

  /**
   * Proves the object sound: by its record when its inode is unchanged since it was last hashed,
   * else by hashing it (and recording that). `full` always hashes. Never throws for a fault: says it,
   * after quarantining a damaged object and reporting either.
   */
  async check(hash: ContentHash, options: { readonly full?: boolean; readonly size?: number } = {}): Promise<CheckResult> {
    let st: BigIntStats;
    try {
      st = await lstat(this.path(hash), { bigint: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await this.missing(hash);
      return 'missing';
    }
    if (!st.isFile() || (options.size !== undefined && st.size !== BigInt(options.size))) {
      await this.damaged(hash, st, `it holds ${st.size} bytes, not ${options.size}`);
      return 'damaged';
    }
    if (!options.full && (await this.records.holds(hash, st))) return 'ok';
    try {
      for await (const _ of this.verifiedChunks(hash, options.size === undefined ? {} : { size: options.size }));
      return 'ok';
    } catch (e) {
      if (e instanceof DstackError && e.code === 'DS0303') return 'missing';
      if (e instanceof DstackError && e.code === 'DS0304') return 'damaged';
      throw e;
    }
  }

  async verifiedPath(hash: ContentHash): Promise<string> {
    const r = await this.check(hash);
    if (r === 'missing') throw missingError(hash);
    if (r === 'damaged') throw damagedError(hash, 'it does not hold the bytes it is named after');
    return this.path(hash);
  }

  async readVerified(hash: ContentHash, size: number): Promise<Buffer> {
    const fh = await this.openObject(hash);
    try {
      const before = await fh.stat({ bigint: true });
      if (before.isFile() && before.size === BigInt(size) && (await this.records.holds(hash, before))) {
        const body = Buffer.allocUnsafe(size);
        let read = 0;
        for (let n = -1; read < size && n !== 0; read += n) n = (await fh.read(body, read, size - read, read)).bytesRead;
        // ctime moves with any write: the bytes read are the ones the record vouches for.
        if (read === size && statKey(await fh.stat({ bigint: true })) === statKey(before)) return body;
      }
    } finally {
      await fh.close().catch(() => undefined);
    }
    // No record, or the file changed under the read: the bytes are hashed as they are read.
    const chunks: Buffer[] = [];
    for await (const c of this.get(hash, { size })) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /**
   * Hard-links the object at `to` once it is proved sound (DS0303/DS0304 otherwise), keeping its
   * record across the link. Errors of `link` itself (EXDEV, EPERM…) are the caller's to fall back on.
   */
  async link(hash: ContentHash, to: string): Promise<void> {
    const from = await this.verifiedPath(hash);
    await link(from, to);
    await this.rerecord([hash]);
  }

  /**
   * Runs `remove` (which deletes hard links to `hashes` made with `link`) and keeps the records of
   * the objects that were sound just before: removing a link changes their ctime.
   */
  async unlinking(hashes: Iterable<ContentHash>, remove: () => Promise<void>): Promise<void> {
    const sound: ContentHash[] = [];
    await forEachLimit([...new Set(hashes)], IO_CONCURRENCY, async (h) => {
      const st = await lstat(this.path(h), { bigint: true }).catch(() => undefined);
      if (st && (await this.records.holds(h, st))) sound.push(h);
    });
    await remove();
    await this.rerecord(sound);
  }

  /** After our own link or unlink: same inode, size and mtime, only ctime moved — the record follows. */
  private async rerecord(hashes: Iterable<ContentHash>): Promise<void> {
    await forEachLimit([...new Set(hashes)], IO_CONCURRENCY, async (h) => {
      const st = await lstat(this.path(h), { bigint: true }).catch(() => undefined);
      if (st?.isFile()) await this.records.record(h, st);
    });
  }

  async put(hash: ContentHash, size: number, openSource: () => Readable | Promise<Readable>, options: PutOptions = {}): Promise<{ readonly created: boolean }> {
    if (!isContentHash(hash)) throw new DstackError('DS0301', `malformed content hash '${String(hash)}'`);
    if (await this.soundHere(hash, size)) return { created: false };
    const source = await openSource();
    const r = await this.writeIn(source, options.signal);
    if (r.hash !== hash || r.size !== size) {
      await unlink(r.tmp).catch(() => undefined);
      throw damagedError(hash, `the bytes given for it hash to ${r.hash.slice(0, 12)}… (${r.size} bytes, not ${size})`);
    }
    return { created: await this.place(r) };
  }

  /**
   * Adds a file's content, hashing first and copying only what is new: storing content the store
   * already has (the same artifacts again, a cached dep's output) costs one read and no write. An
   * object already there is trusted only when its record says it is unchanged since it was hashed;
   * otherwise it is hashed too (one more read, once), and replaced when damaged.
   */
  async putFile(path: string): Promise<{ readonly hash: ContentHash; readonly created: boolean; readonly size: number }> {
    const seen = await hashOpen(path);
    if (await this.soundHere(seen.hash, seen.size)) return { hash: seen.hash, created: false, size: seen.size };
    const fh = await openFileNoFollow(path, `artifact file '${path}'`);
    try {
      const r = await this.writeIn(readChunks(fh));
      return { hash: r.hash, created: await this.place(r), size: r.size };
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  /** Bytes of unknown hash, hashed as they are written to a temp file: see ArtifactStore.putStream. */
  async putStream(source: AsyncIterable<Buffer> | Iterable<Buffer>, signal?: AbortSignal): Promise<{ readonly hash: ContentHash; readonly created: boolean; readonly size: number }> {
    const r = await this.writeIn(source, signal);
    try {
      if (await this.soundHere(r.hash, r.size)) return { hash: r.hash, created: false, size: r.size };
      return { hash: r.hash, created: await this.place(r), size: r.size };
    } finally {
      await unlink(r.tmp).catch(() => undefined);
    }
  }

  /**
   * True when a sound object of `size` bytes is already under `hash` (its mtime then refreshed: prune
   * spares young objects, and this one may belong to a run that has not recorded it yet). A damaged
   * one is quarantined, so the caller writes it afresh.
   */
  private async soundHere(hash: ContentHash, size: number): Promise<boolean> {
    const st = await lstat(this.path(hash), { bigint: true }).catch(() => undefined);
    if (!st) return false;
    if (!st.isFile() || st.size !== BigInt(size)) {
      await this.quarantine(hash, st);
      return false;
    }
    if (!(await this.records.holds(hash, st))) {
      const r = await this.check(hash, { full: true, size });
      if (r !== 'ok') return false;
    }
    const now = new Date();
    await utimes(this.path(hash), now, now).catch(() => undefined);
    await this.rerecord([hash]);
    return true;
  }

  /** One pass: hash and copy the same chunks into a temp file, fsynced. */
  private async writeIn(source: AsyncIterable<unknown> | Iterable<unknown>, signal?: AbortSignal): Promise<{ tmp: string; hash: ContentHash; size: number; ino: bigint }> {
    this.tmpReady ??= mkdir(this.tmpDir, { recursive: true });
    await this.tmpReady;
    const tmp = join(this.tmpDir, `${process.pid}-${randomBytes(8).toString('hex')}`);
    let fh: FileHandle | undefined;
    try {
      fh = await open(tmp, 'wx', OBJECT_MODE);
      const h = createHash('sha256');
      let size = 0;
      for await (const chunk of source) {
        signal?.throwIfAborted();
        const b = chunk as Buffer;
        h.update(b);
        size += b.length;
        await writeAll(fh, b);
      }
      await fh.chmod(OBJECT_MODE);
      await fh.sync();
      const { ino } = await fh.stat({ bigint: true });
      await fh.close();
      fh = undefined;
      return { tmp, hash: asContentHash(h.digest('hex')), size, ino };
    } catch (e) {
      await fh?.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  }

  /** Links the temp file under its hash (unless a sound object got there first) and records it. */
  private async place(r: { tmp: string; hash: ContentHash; ino: bigint }): Promise<boolean> {
    try {
      const final = this.path(r.hash);
      await mkdir(dirname(final), { recursive: true });
      const created = await linkIfAbsent(r.tmp, final);
      await unlink(r.tmp).catch(() => undefined);
      const st = await lstat(final, { bigint: true }).catch(() => undefined);
      // Ours (not a racing writer's, which that writer records): we hashed these very bytes.
      if (st && st.ino === r.ino) await this.records.record(r.hash, st);
      return created;
    } finally {
      await unlink(r.tmp).catch(() => undefined);
    }
  }

  /**
   * Moves a damaged object out of the way, to `objects/quarantine/<hash>-<time>` (kept for a look,
   * removed by hand). Only the inode that was found damaged: one put there meanwhile stays.
   */
  async quarantine(hash: ContentHash, seen?: BigIntStats): Promise<string | undefined> {
    this.records.forget(hash);
    const path = this.path(hash);
    const now = await lstat(path, { bigint: true }).catch(() => undefined);
    if (!now || (seen && now.ino !== seen.ino)) return undefined;
    await mkdir(this.quarantineDir, { recursive: true });
    const to = join(this.quarantineDir, `${hash}-${Date.now()}-${randomBytes(3).toString('hex')}`);
    try {
      await rename(path, to);
      this.quarantined.set(hash, to);
      return to;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  private async missing(hash: ContentHash): Promise<DstackError> {
    await this.report(hash, 'missing');
    return missingError(hash);
  }

  private async damaged(hash: ContentHash, seen: BigIntStats | undefined, why: string): Promise<DstackError> {
    await this.quarantine(hash, seen);
    await this.report(hash, 'damaged');
    return damagedError(hash, why);
  }

  private async report(hash: ContentHash, fault: ObjectFault): Promise<void> {
    try {
      await this.onFault?.(hash, fault);
    } catch {
      // Forgetting cache hits is a courtesy to the next run; this read fails either way.
    }
  }

  /** Removes temp files older than `maxAgeMs` left by crashed writers. */
  async cleanTemp(maxAgeMs = 24 * 3600 * 1000): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const p = join(this.tmpDir, name);
      const st = await stat(p).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > maxAgeMs) {
        await unlink(p).catch(() => undefined);
        removed++;
      }
    }
    return removed;
  }
}

export function missingError(hash: ContentHash): DstackError {
  return new DstackError('DS0303', `stored object ${hash} is missing from the store`, {
    hint: 'the job that made it will run again next time; `dstack store verify` checks the whole store',
  });
}

export function damagedError(hash: ContentHash, why: string): DstackError {
  return new DstackError('DS0304', `stored object ${hash} is damaged (${why}); it was moved to objects/quarantine`, {
    hint: 'the job that made it will run again next time; `dstack store verify` checks the whole store',
  });
}

/**
 * Puts `tmp` at `final` unless an object is already there. `link` fails with EEXIST instead of
 * replacing, so of two writers racing on the same content exactly one reports `created`.
 */
async function linkIfAbsent(tmp: string, final: string): Promise<boolean> {
  try {
    await link(tmp, final);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      const now = new Date();
      await utimes(final, now, now).catch(() => undefined);
      return false;
    }
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw e;
  }
  // Filesystems without hard links: rename, which may replace an identical object; harmless.
  try {
    await access(final);
    return false;
  } catch {
    await rename(tmp, final);
    return true;
  }
}
