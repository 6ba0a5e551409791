/**
 * The local artifact store: trees of files over the local object store (local-objects.ts).
 * `save` reads a job's artifact paths without following anything out of its folder; `materialize`
 * writes a manifest out, every file verified as it is copied and nothing written through a symlink.
 */
import { chmod, lstat, mkdir, readdir, readlink, rm, symlink, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DstackError } from '../engine/errors.js';
import { forEachLimit } from '../engine/limit.js';
import type { ArtifactStore, Manifest, ManifestEntry, ObjectFault, SaveResult, SkippedEntry } from '../engine/objects.js';
import { insideRelative } from '../engine/paths.js';
import { mkdirNoFollow, resolveInside } from '../engine/safe-fs.js';
import type { ArtifactSpec, ContentHash } from '../engine/types.js';
import { LocalObjectStore } from './local-objects.js';
import { copyObjectTo } from './object-io.js';
import { escapingSymlinkError, makeManifest, throughLink, validateManifest } from './manifest.js';

export interface LocalArtifactStoreOptions {
  /** The dstack home (`~/.dstack` or `DSTACK_HOME`); objects live under `objects/`. */
  readonly home: string;
  /** Files hashed or copied at once. */
  readonly concurrency?: number;
  /** Told of every object a read found missing or damaged: see LocalObjectStoreOptions. */
  readonly onFault?: (hash: ContentHash, fault: ObjectFault) => void | Promise<void>;
}

export class LocalArtifactStore implements ArtifactStore {
  readonly home: string;
  readonly objects: LocalObjectStore;
  private readonly concurrency: number;

  constructor(options: LocalArtifactStoreOptions) {
    this.home = options.home;
    this.objects = new LocalObjectStore({ home: options.home, ...(options.onFault ? { onFault: options.onFault } : {}) });
    this.concurrency = options.concurrency ?? 8;
  }

  has(hash: ContentHash): Promise<boolean> {
    return this.objects.has(hash);
  }

  putFile(path: string): Promise<{ readonly hash: ContentHash; readonly created: boolean; readonly size: number }> {
    return this.objects.putFile(path);
  }

  putStream(source: AsyncIterable<Buffer> | Iterable<Buffer>, options: { readonly signal?: AbortSignal } = {}): Promise<{ readonly hash: ContentHash; readonly created: boolean; readonly size: number }> {
    return this.objects.putStream(source, options.signal);
  }

  async save(root: string, specs: readonly ArtifactSpec[]): Promise<SaveResult> {
    const entries = new Map<string, ManifestEntry>();
    const files = new Map<string, { abs: string; mode: number }>();
    const missing: string[] = [];
    const skipped: SkippedEntry[] = [];

    const walk = async (rel: string, abs: string, st: Awaited<ReturnType<typeof lstat>>): Promise<void> => {
      if (st.isSymbolicLink()) {
        const target = await readlink(abs);
        // Followed the way the container would, through every link on the way: `a -> b`, `b -> /etc` leaves.
        const r = await resolveInside(root, rel);
        if (!r.inside) throw escapingSymlinkError(rel, target, throughLink(rel, r.via));
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
      } else {
        // Reading a fifo would hang, a device could be anything: not artifacts, and the user is told.
        skipped.push({ path: rel || '.', kind: st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'device' });
      }
    };

    for (const spec of specs) {
      const rel = spec.path === '' ? '' : insideRelative(spec.path);
      if (rel === undefined) {
        throw new DstackError('DS0009', `artifact path '${spec.path}' leaves the working directory`, {
          hint: 'artifact paths are relative to the working directory and may not contain `..` that climbs out',
        });
      }
      if (rel !== '') {
        // A folder on the way may itself be a symlink out of the tree (`out -> /etc`, or a chain).
        const parent = dirname(rel);
        const r = parent === '.' ? undefined : await resolveInside(root, parent);
        if (r && !r.inside) {
          const target = await readlink(join(root, r.via)).catch(() => '?');
          throw new DstackError('DS0302', `artifact path '${rel}' is reached through a symlink that leaves the working directory ('${r.via}' -> '${target}')`);
        }
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
      await walk(rel, abs, st);
    }

    let newBytes = 0;
    await forEachLimit([...files], this.concurrency, async ([rel, f]) => {
      const r = await this.putFile(f.abs);
      if (r.created) newBytes += r.size;
      entries.set(rel, { type: 'file', path: rel, size: r.size, mode: f.mode, hash: r.hash });
    });
    return { manifest: makeManifest(entries.values()), newBytes, missing, skipped };
  }

  async materialize(manifest: Manifest, dest: string): Promise<void> {
    validateManifest(manifest);
    // `dest` is the caller's (a job folder dstack made, a destination the user typed); below it nothing is followed.
    await mkdir(dest, { recursive: true });
    const safeDirs = new Map<string, Promise<string>>();
    // Every folder on the way must be a real folder: a symlink already in `dest` (from the code
    // snapshot, say `data -> /mnt/data`) must not carry a write outside it.
    const folder = (rel: string): Promise<string> => {
      if (rel === '' || rel === '.') return Promise.resolve(dest);
      let made = safeDirs.get(rel);
      if (!made) {
        made = folder(dirname(rel)).then(() => mkdirNoFollow(dest, rel, { what: `artifact folder '${rel}'`, replaceFiles: true }));
        safeDirs.set(rel, made);
      }
      return made;
    };

    const dirs = manifest.entries.filter((e): e is Extract<ManifestEntry, { type: 'dir' }> => e.type === 'dir');
    for (const d of dirs) {
      await folder(dirname(d.path));
      // The entry's own path may be replaced, even when a symlink sits there; only folders above it may not.
      if ((await lstat(join(dest, d.path)).catch(() => undefined))?.isSymbolicLink()) await unlink(join(dest, d.path));
      await folder(d.path);
    }

    const fileEntries = manifest.entries.filter((e): e is Extract<ManifestEntry, { type: 'file' }> => e.type === 'file');
    await forEachLimit(fileEntries, this.concurrency * 2, async (f) => {
      const to = join(await folder(dirname(f.path)), f.path.slice(f.path.lastIndexOf('/') + 1));
      await clearPath(to);
      await copyObjectTo(this.objects, f, to);
    });

    // Symlinks last, so no write above can pass through one we made.
    for (const e of manifest.entries) {
      if (e.type !== 'symlink') continue;
      const to = join(await folder(dirname(e.path)), e.path.slice(e.path.lastIndexOf('/') + 1));
      await clearPath(to);
      await symlink(e.target, to);
    }

    // Folder modes last, so a read-only folder does not stop its own files being written.
    for (const d of [...dirs].reverse()) await chmod(join(dest, d.path), d.mode);
  }
}

/** Entries overwrite whatever is at their path; unlinking first also keeps a write from following a symlink. */
async function clearPath(abs: string): Promise<void> {
  try {
    const st = await lstat(abs);
    await rm(abs, { recursive: st.isDirectory(), force: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
