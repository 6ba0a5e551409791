/**
 * `dstack cp`'s writing half: a manifest out of the store into a folder of the user's, all or
 * nothing. Everything is first written (and verified) into a hidden temporary folder beside the
 * target, so a damaged or missing object leaves the destination as it was; only then is it renamed
 * into place — whole when the target is new, entry by entry (each rename atomic) when it is a
 * folder that exists. Below the target nothing is followed: a symlink where a folder of the copy
 * must go is refused before anything moves, and a copied symlink that leads out of the target
 * (through links that were already there) is removed again and reported.
 */
import { chmod, lstat, mkdir, mkdtemp, readdir, readlink, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ArtifactStore, Manifest } from '../engine/objects.js';
import { resolveInside, symlinkRefused } from '../engine/safe-fs.js';

export interface CopyOutResult {
  /** Symlinks that were copied but led out of the target once among its files, so were removed. */
  readonly droppedLinks: readonly { readonly path: string; readonly target: string }[];
}

export async function copyOut(store: ArtifactStore, manifest: Manifest, target: string): Promise<CopyOutResult> {
  // The target itself is the user's: a symlink they name as DST is followed, like cp does.
  const existing = await stat(target).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  // On the target's own filesystem, so every rename below is one atomic step.
  const tmp = existing ? await mkdtemp(join(target, '.dstack-cp-')) : await mkdir(dirname(target), { recursive: true }).then(() => mkdtemp(join(dirname(target), '.dstack-cp-')));
  try {
    await store.materialize(manifest, tmp);
    if (!existing) {
      await chmod(tmp, 0o777 & ~process.umask());
      await rename(tmp, target);
    } else {
      await refuseLinksOnTheWay(tmp, target, '');
      await mergeInto(tmp, target);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const droppedLinks: { path: string; target: string }[] = [];
  for (const e of manifest.entries) {
    if (e.type !== 'symlink') continue;
    const r = await resolveInside(target, e.path);
    if (r.inside) continue;
    await unlink(join(target, e.path)).catch(() => undefined);
    droppedLinks.push({ path: e.path, target: e.target });
  }
  return { droppedLinks };
}

/** Before anything moves: every folder of the copy must land on a real folder (or nothing) in `dst`. */
async function refuseLinksOnTheWay(src: string, dst: string, rel: string): Promise<void> {
  for (const name of await readdir(join(src, rel))) {
    const r = rel === '' ? name : `${rel}/${name}`;
    if (!(await lstat(join(src, r))).isDirectory()) continue;
    const there = await lstat(join(dst, r)).catch(() => undefined);
    if (there?.isSymbolicLink()) throw symlinkRefused(join(dst, r), await readlink(join(dst, r)).catch(() => undefined), 'the destination');
    if (there?.isDirectory()) await refuseLinksOnTheWay(src, dst, r);
  }
}

/** Moves `src`'s entries into `dst`: folders merge, anything else replaces what is there (one rename each). */
async function mergeInto(src: string, dst: string): Promise<void> {
  for (const name of await readdir(src)) {
    const s = join(src, name);
    const d = join(dst, name);
    const [ss, ds] = await Promise.all([lstat(s), lstat(d).catch(() => undefined)]);
    if (ss.isDirectory() && ds?.isDirectory()) {
      await mergeInto(s, d);
      continue;
    }
    // A file replaces a file in one rename; a folder replaces a file, or a file a folder, after it goes.
    if (ds && (ds.isDirectory() || ss.isDirectory())) await rm(d, { recursive: true, force: true });
    await rename(s, d);
  }
}
