/**
 * Hashing a set of files at disk speed: one stat per file, one batched look-up in the stat cache
 * ((device, inode, size, mtime) → hash, kept in the run store), and only the misses are read — in
 * large chunks, a few at a time. An unchanged tree costs a stat per file and nothing more.
 *
 * Like git's index, a file modified in the last moments is hashed but not cached ("racy git": a
 * write within the same mtime tick as our read would leave size and mtime unchanged, and the cache
 * would vouch for content it never saw). See https://git-scm.com/docs/racy-git.
 */
import { lstat, readlink, rm, symlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { mkdirNoFollow } from '../engine/safe-fs.js';
import { DstackError } from '../engine/errors.js';
import { insideRelative } from '../engine/paths.js';
import type { StatKey } from '../engine/store/types.js';
import { treeHashOf } from '../engine/fingerprint.js';
import type { ContentHash } from '../engine/types.js';
import { hashFile } from './hash.js';
import { escapingLinks, makeManifest, symlinkTargetInside } from './manifest.js';
import type { ArtifactStore, Manifest, ManifestEntry } from './types.js';
import { forEachLimit } from '../engine/limit.js';

/** The part of the run store this needs. */
export interface FileHashCache {
  getFileHashes(keys: readonly StatKey[]): Map<string, ContentHash>;
  putFileHashes(entries: readonly (StatKey & { readonly hash: ContentHash })[]): void;
}

export interface HashTreeOptions {
  /** The folder the paths are relative to. */
  readonly root: string;
  /** `/`-separated relative paths (a code snapshot's files). A path gone since it was listed is left out. */
  readonly files: readonly { readonly path: string }[];
  readonly cache: FileHashCache;
  /**
   * Also put every file into this store (the code snapshot is stored once by content). A stat-cache
   * hit whose object is already there is not read at all.
   */
  readonly store?: ArtifactStore;
  /** Files read at once (default 8). */
  readonly concurrency?: number;
  /** Files modified less than this long ago are not cached (default 2000 ms). */
  readonly racyMs?: number;
  /** For tests: called with each path whose content is read. */
  readonly onRead?: (path: string) => void;
}

export interface HashedTree {
  /** Files and symlinks, sorted by path (no folders): a manifest that materializes the tree. */
  readonly manifest: Manifest;
  /** `treeHashOf(manifest.entries)`. */
  readonly hash: ContentHash;
  /** How many files were read (stat-cache misses). */
  readonly read: number;
}

const keyOf = (k: StatKey): string => `${k.dev}:${k.ino}`;

export async function hashTree(options: HashTreeOptions): Promise<HashedTree> {
  const { root, cache, store } = options;
  const racyNs = BigInt(options.racyMs ?? 2000) * 1_000_000n;
  const nowNs = BigInt(Date.now()) * 1_000_000n;

  type Stated = { readonly path: string; readonly abs: string; readonly key: StatKey; readonly mode: number; readonly racy: boolean };
  const entries: ManifestEntry[] = [];
  const stated: Stated[] = [];
  await forEachLimit(options.files, 32, async ({ path }) => {
    const abs = join(root, path);
    let st;
    try {
      st = await lstat(abs, { bigint: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw e;
    }
    if (st.isSymbolicLink()) {
      entries.push({ type: 'symlink', path, target: await readlink(abs) });
    } else if (st.isFile()) {
      const key: StatKey = { dev: Number(st.dev), ino: Number(st.ino), size: Number(st.size), mtimeNs: Number(st.mtimeNs) };
      stated.push({ path, abs, key, mode: st.mode & 0o111n ? 0o755 : 0o644, racy: nowNs - st.mtimeNs < racyNs });
    }
  });

  const known = stated.length ? cache.getFileHashes(stated.map((s) => s.key)) : new Map<string, ContentHash>();
  const learnt: (StatKey & { hash: ContentHash })[] = [];
  let read = 0;
  await forEachLimit(stated, options.concurrency ?? 8, async (s) => {
    let hash = known.get(keyOf(s.key));
    let size = s.key.size;
    if (hash === undefined || (store && !(await store.has(hash)))) {
      options.onRead?.(s.path);
      read++;
      const r = store ? await store.putFile(s.abs) : await hashFile(s.abs);
      hash = r.hash;
      size = r.size;
      if (!s.racy && size === s.key.size) learnt.push({ ...s.key, hash });
    }
    entries.push({ type: 'file', path: s.path, size, mode: s.mode, hash });
  });
  if (learnt.length) cache.putFileHashes(learnt);

  const manifest = makeManifest(entries);
  return { manifest, hash: treeHashOf(manifest.entries), read };
}

/**
 * Writes a code snapshot's manifest under `dest`. Unlike artifacts, code may hold symlinks that
 * point outside (`data -> /mnt/data`): they are the user's own and make sense inside the container,
 * so they are kept — written last, after every file, so nothing is written through them; a dep's
 * artifacts materialized afterwards replace such a link rather than follow it (see materialize).
 */
export async function materializeSnapshot(store: ArtifactStore, snapshot: Manifest, dest: string): Promise<void> {
  const chained = new Set(escapingLinks(snapshot.entries).map((l) => l.path));
  const outward = snapshot.entries.filter(
    (e): e is Extract<ManifestEntry, { type: 'symlink' }> => e.type === 'symlink' && (symlinkTargetInside(e.path, e.target) === undefined || chained.has(e.path)),
  );
  if (outward.length === 0) return store.materialize(snapshot, dest);
  await store.materialize(makeManifest(snapshot.entries.filter((e) => !outward.includes(e as never))), dest);
  for (const l of outward) {
    if (insideRelative(l.path) !== l.path) throw new DstackError('DS0302', `snapshot entry '${l.path}' leaves the working directory`);
    const to = join(dest, l.path);
    await mkdirNoFollow(dest, posix.dirname(l.path), { what: `the code's symlink '${l.path}'`, replaceFiles: true });
    await rm(to, { force: true, recursive: true });
    await symlink(l.target, to);
  }
}
