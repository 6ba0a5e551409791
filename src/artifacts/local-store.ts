/**
 * The local content-addressed store: `${home}/objects/sha256/ab/<hash>`, one read-only file per
 * distinct content. Objects appear under their final name only complete and fsynced (written to
 * `objects/tmp/` first, then linked into place), so a crash leaves at most a temp file, and several
 * processes may save the same content at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  access,
  chmod,
  constants,
  copyFile,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  realpath,
  rename,
  rm,
  stat,
  symlink,
  unlink,
  type FileHandle,
  utimes,
} from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { DstackError } from '../engine/errors.js';
import { insideRelative } from '../engine/paths.js';
import { asContentHash, type ArtifactSpec, type ContentHash } from '../engine/types.js';
import { CHUNK_SIZE, hashFile, isContentHash } from './hash.js';
import { escapingSymlinkError, makeManifest, symlinkTargetInside, validateManifest } from './manifest.js';
import type { ArtifactStore, Manifest, ManifestEntry, SaveResult } from './types.js';
import { forEachLimit } from '../engine/limit.js';

export interface LocalArtifactStoreOptions {
  /** The dstack home (`~/.dstack` or `DSTACK_HOME`); objects live under `objects/`. */
  readonly home: string;
  /** Files hashed or copied at once. */
  readonly concurrency?: number;
}

const OBJECT_MODE = 0o444;

export class LocalArtifactStore implements ArtifactStore {
  readonly home: string;
  private readonly objectsDir: string;
  private readonly tmpDir: string;
  private readonly concurrency: number;
  private tmpReady: Promise<unknown> | undefined;

  constructor(options: LocalArtifactStoreOptions) {
    this.home = options.home;
    this.objectsDir = join(options.home, 'objects', 'sha256');
    this.tmpDir = join(options.home, 'objects', 'tmp');
    this.concurrency = options.concurrency ?? 8;
  }

  objectPath(hash: ContentHash): string {
    if (!isContentHash(hash)) throw new DstackError('DS0301', `malformed content hash '${String(hash)}'`);
    return join(this.objectsDir, hash.slice(0, 2), hash);
  }

  async has(hash: ContentHash): Promise<boolean> {
    if (!isContentHash(hash)) return false;
    try {
      await access(this.objectPath(hash));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Hash first, copy only what is new. Storing content the store already has (the same artifacts
   * again, a cached dep's output) then costs one read and no write — the 1 GiB "store it twice"
   * benchmark wrote 1,057 MiB through temp files before this. New content is read twice, the second
   * time mostly from the page cache.
   */
  async putFile(path: string): Promise<{ readonly hash: ContentHash; readonly created: boolean; readonly size: number }> {
    const seen = await hashFile(path);
    if (await this.has(seen.hash)) {
      // Fresh again for prune's age guard: it may belong to a run that has not recorded it yet.
      const now = new Date();
      await utimes(this.objectPath(seen.hash), now, now).catch(() => undefined);
      return { hash: seen.hash, created: false, size: seen.size };
    }
    return this.copyIn(path);
  }

  /** One pass: hash and copy the same chunks into a temp file, then link it under its hash. */
  private async copyIn(path: string): Promise<{ readonly hash: ContentHash; readonly created: boolean; readonly size: number }> {
    this.tmpReady ??= mkdir(this.tmpDir, { recursive: true });
    await this.tmpReady;
    const tmp = join(this.tmpDir, `${process.pid}-${randomBytes(8).toString('hex')}`);
    let fh: FileHandle | undefined;
    try {
      fh = await open(tmp, 'wx', OBJECT_MODE);
      const h = createHash('sha256');
      let size = 0;
      for await (const chunk of createReadStream(path, { highWaterMark: CHUNK_SIZE })) {
        const b = chunk as Buffer;
        h.update(b);
        size += b.length;
        await writeAll(fh, b);
      }
      await fh.chmod(OBJECT_MODE);
      await fh.sync();
      await fh.close();
      fh = undefined;
      const hash = asContentHash(h.digest('hex'));
      const final = this.objectPath(hash);
      await mkdir(dirname(final), { recursive: true });
      const created = await linkIfAbsent(tmp, final);
      return { hash, created, size };
    } finally {
      await fh?.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    }
  }

  async save(root: string, specs: readonly ArtifactSpec[]): Promise<SaveResult & { readonly missing: readonly string[] }> {
    const realRoot = await realpath(root);
    const entries = new Map<string, ManifestEntry>();
    const files = new Map<string, { abs: string; mode: number }>();
    const missing: string[] = [];

    const walk = async (rel: string, abs: string, st: Awaited<ReturnType<typeof lstat>>): Promise<void> => {
      if (st.isSymbolicLink()) {
        const target = await readlink(abs);
        if (symlinkTargetInside(rel, target) === undefined) throw escapingSymlinkError(rel, target);
        entries.set(rel, { type: 'symlink', path: rel, target });
      } else if (st.isFile()) {
        files.set(rel, { abs, mode: Number(st.mode) & 0o111 ? 0o755 : 0o644 });
      } else if (st.isDirectory()) {
        if (rel !== '') entries.set(rel, { type: 'dir', path: rel, mode: 0o755 });
        const names = (await readdir(abs)).sort();
        for (const name of names) {
          const childAbs = join(abs, name);
          const child = await lstat(childAbs);
          await walk(rel === '' ? name : `${rel}/${name}`, childAbs, child);
        }
      }
      // Sockets, fifos and devices are not artifacts.
    };

    for (const spec of specs) {
      const rel = spec.path === '' ? '' : insideRelative(spec.path);
      if (rel === undefined) {
        throw new DstackError('DS0009', `artifact path '${spec.path}' leaves the working directory`, {
          hint: 'artifact paths are relative to the working directory and may not contain `..` that climbs out',
        });
      }
      const abs = rel === '' ? root : join(root, rel);
      let st;
      try {
        st = await lstat(abs);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') {
          missing.push(spec.path);
          continue;
        }
        throw e;
      }
      if (rel !== '') {
        // A folder on the way may itself be a symlink out of the tree (`out -> /etc`).
        const parent = await realpath(dirname(abs));
        if (parent !== realRoot && !parent.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep)) {
          throw new DstackError('DS0302', `artifact path '${rel}' is reached through a symlink that leaves the working directory (to '${parent}')`);
        }
      }
      await walk(rel, abs, st);
    }

    let newBytes = 0;
    await forEachLimit([...files], this.concurrency, async ([rel, f]) => {
      const r = await this.putFile(f.abs);
      if (r.created) newBytes += r.size;
      entries.set(rel, { type: 'file', path: rel, size: r.size, mode: f.mode, hash: r.hash });
    });
    return { manifest: makeManifest(entries.values()), newBytes, missing };
  }

  async materialize(manifest: Manifest, dest: string): Promise<void> {
    validateManifest(manifest);
    await mkdir(dest, { recursive: true });
    const safeDirs = new Set<string>(['']);

    // Every folder on the way must be a real folder: a symlink already in `dest` (from the code
    // snapshot, say `data -> /mnt/data`) must not carry a write outside it.
    const ensureParents = async (rel: string): Promise<void> => {
      const parts = rel.split('/');
      parts.pop();
      let cur = '';
      for (const part of parts) {
        cur = cur === '' ? part : `${cur}/${part}`;
        if (safeDirs.has(cur)) continue;
        await ensureRealDir(dest, cur);
        safeDirs.add(cur);
      }
    };

    const dirs = manifest.entries.filter((e): e is Extract<ManifestEntry, { type: 'dir' }> => e.type === 'dir');
    for (const d of dirs) {
      await ensureParents(d.path);
      // The entry's own path may be replaced, even when a symlink sits there; only folders above it may not.
      if ((await lstat(join(dest, d.path)).catch(() => undefined))?.isSymbolicLink()) await unlink(join(dest, d.path));
      await ensureRealDir(dest, d.path);
      safeDirs.add(d.path);
    }

    const fileEntries = manifest.entries.filter((e): e is Extract<ManifestEntry, { type: 'file' }> => e.type === 'file');
    await forEachLimit(fileEntries, this.concurrency * 2, async (f) => {
      await ensureParents(f.path);
      const to = join(dest, f.path);
      await clearPath(to);
      try {
        await copyFile(this.objectPath(f.hash), to, constants.COPYFILE_FICLONE);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !(await this.has(f.hash))) {
          throw new DstackError('DS0301', `artifact object ${f.hash} for '${f.path}' is missing from the store`, { cause: e });
        }
        throw e;
      }
      await chmod(to, f.mode);
    });

    // Symlinks last, so no write above can pass through one we made.
    for (const e of manifest.entries) {
      if (e.type !== 'symlink') continue;
      await ensureParents(e.path);
      const to = join(dest, e.path);
      await clearPath(to);
      await symlink(e.target, to);
    }

    // Folder modes last, so a read-only folder does not stop its own files being written.
    for (const d of [...dirs].reverse()) await chmod(join(dest, d.path), d.mode);
  }

  /** Removes temp files older than `maxAgeMs` left by crashed writers. */
  async cleanTemp(maxAgeMs = 24 * 3600 * 1000): Promise<number> {
    let removed = 0;
    const names = await readdir(this.tmpDir).catch(() => [] as string[]);
    for (const name of names) {
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

async function writeAll(fh: FileHandle, b: Buffer): Promise<void> {
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off);
    off += bytesWritten;
  }
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
      // Reused content is fresh again: prune spares objects younger than its guard, and this one may
      // belong to a run that has not recorded its manifest yet.
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

async function ensureRealDir(dest: string, rel: string): Promise<void> {
  const abs = join(dest, rel);
  for (let attempt = 0; attempt < 3; attempt++) {
    let st;
    try {
      st = await lstat(abs);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      try {
        await mkdir(abs);
        return;
      } catch (e2) {
        if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw e2;
      }
    }
    if (st.isDirectory()) return;
    if (st.isSymbolicLink()) {
      throw new DstackError('DS0302', `artifact entry under '${rel}' would be written through a symlink`, {
        hint: `'${rel}' is a symlink in the destination; remove it or change the artifact path`,
      });
    }
    // A file where the manifest wants a folder: entries overwrite.
    await rm(abs, { force: true });
  }
  throw new DstackError('DS0301', `could not create folder '${rel}'`);
}

/** Entries overwrite whatever is at their path; unlinking first also keeps a copy from following a symlink. */
async function clearPath(abs: string): Promise<void> {
  try {
    const st = await lstat(abs);
    await rm(abs, { recursive: st.isDirectory(), force: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

