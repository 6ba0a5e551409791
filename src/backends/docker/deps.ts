/**
 * Deps' artifacts without byte copies. The deps' manifests are merged into one tree (later deps win
 * on the same path, as `ArtifactStore.materialize` would have it), written under the job's
 * `deps/` folder as hard links to the store's objects, and each top-level path of that tree is
 * bind-mounted read-only at `/workflow/<path>`.
 *
 * Why read-only: containers run as root, and root ignores the objects' 0444 mode, so a writable
 * mount would let a job write through a hard link into the store and change every run that shares
 * the object. The price: a job cannot write into (or under) its deps' artifact paths, and a code file
 * at such a path is hidden by the dep's artifact.
 */
import { chmod, lstat, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { copyObjectTo } from '../../artifacts/object-io.js';
import { join, posix } from 'node:path';
import { isFileObjectStore, type ArtifactStore, type Manifest, type ManifestEntry, type SkippedEntry } from '../../artifacts/types.js';
import { makeManifest, validateManifest } from '../../artifacts/manifest.js';
import type { ArtifactSpec, ContentHash } from '../../engine/types.js';
import type { BackendNotice } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import { forEachLimit } from '../../engine/limit.js';

/** A path of the merged tree to bind-mount read-only at `/workflow/<path>`. */
export interface DepMount {
  /** Relative to `/workflow`, `/`-separated. */
  readonly path: string;
  readonly type: 'file' | 'dir';
}

/** What `stageDeps` made. Symlinks at the top of the tree are written into /workflow itself: a link has no bytes to protect. */
export interface StagedDeps {
  readonly mounts: readonly DepMount[];
  /** Objects hard-linked under the deps folder: removing the folder goes through `FileObjectStore.unlinking`. */
  readonly linked: readonly ContentHash[];
}

/**
 * The deps' entries as one tree, in dependency order: an entry replaces whatever was at its path,
 * a file or link replaces a whole folder, and a file or link on the way to a later entry gives way
 * to an (implicit) folder — what materializing the manifests one after another would leave.
 */
export function mergeDeps(deps: readonly Manifest[]): Map<string, ManifestEntry> {
  const tree = new Map<string, ManifestEntry>();
  for (const m of deps) {
    validateManifest(m);
    for (const e of m.entries) {
      for (let parent = posix.dirname(e.path); parent !== '.'; parent = posix.dirname(parent)) {
        const above = tree.get(parent);
        if (above && above.type !== 'dir') tree.delete(parent);
      }
      const before = tree.get(e.path);
      if (before?.type === 'dir' && e.type !== 'dir') {
        const prefix = `${e.path}/`;
        for (const p of tree.keys()) if (p.startsWith(prefix)) tree.delete(p);
      }
      tree.set(e.path, e);
    }
  }
  return tree;
}

/**
 * The entries whose parent is not in the tree: the outermost paths, so that of `data` and
 * `data/sub` only `data` is mounted. Sorted.
 */
export function topLevel(tree: ReadonlyMap<string, ManifestEntry>): ManifestEntry[] {
  const out: ManifestEntry[] = [];
  for (const e of tree.values()) {
    const parent = posix.dirname(e.path);
    if (parent === '.' || !tree.has(parent)) out.push(e);
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Codes on which a hard link is not possible here and a copy is made instead. */
const NO_LINK = new Set(['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP', 'EACCES']);
const IO_CONCURRENCY = 32;

export interface StageDepsOptions {
  readonly deps: readonly Manifest[];
  readonly store: ArtifactStore;
  /** `${jobDir}/deps`: emptied first. */
  readonly depsDir: string;
  /** `${jobDir}/workflow`, already holding the code snapshot: mount points are made there. */
  readonly workflowDir: string;
}

export async function stageDeps(o: StageDepsOptions): Promise<StagedDeps> {
  await rm(o.depsDir, { recursive: true, force: true });
  if (o.deps.length === 0) return { mounts: [], linked: [] };
  const tree = mergeDeps(o.deps);
  const tops = topLevel(tree);
  await mkdir(o.depsDir, { recursive: true });

  // Folders first, parents before children (the tree is walked in path order).
  const dirs = [...tree.values()].filter((e): e is Extract<ManifestEntry, { type: 'dir' }> => e.type === 'dir');
  dirs.sort((a, b) => (a.path < b.path ? -1 : 1));
  const made = new Set<string>();
  const ensureDir = async (rel: string): Promise<void> => {
    if (rel === '.' || made.has(rel)) return;
    await mkdir(join(o.depsDir, rel), { recursive: true });
    made.add(rel);
  };
  for (const d of dirs) await ensureDir(d.path);

  const files = [...tree.values()].filter((e): e is Extract<ManifestEntry, { type: 'file' }> => e.type === 'file');
  const objects = o.store.objects;
  const linked: ContentHash[] = [];
  await forEachLimit(files, IO_CONCURRENCY, async (f) => {
    await ensureDir(posix.dirname(f.path));
    const to = join(o.depsDir, f.path);
    // The object's 0444 is shared by every link: an executable needs its own inode to carry +x.
    if ((f.mode & 0o111) === 0 && isFileObjectStore(objects)) {
      try {
        // Checked first (cheaply when it was hashed before and is unchanged since): a link hands
        // the job the object's own bytes, with no copy to verify on the way.
        await objects.link(f.hash, to);
        linked.push(f.hash);
        return;
      } catch (e) {
        if (!NO_LINK.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
      }
    }
    await copyObjectTo(objects, f, to);
  });
  for (const e of tree.values()) {
    if (e.type !== 'symlink') continue;
    await ensureDir(posix.dirname(e.path));
    await symlink(e.target, join(o.depsDir, e.path));
  }
  // Modes last, deepest first, so a read-only folder does not stop its own entries being written.
  for (const d of dirs.reverse()) if (d.mode !== 0o755) await chmod(join(o.depsDir, d.path), d.mode);

  const mounts: DepMount[] = [];
  for (const e of tops) {
    await clearMountPoint(o.workflowDir, e.path);
    const at = join(o.workflowDir, e.path);
    if (e.type === 'symlink') {
      // Nothing to write through: the link's target is resolved inside the container, under /workflow.
      await symlink(e.target, at);
    } else if (e.type === 'dir') {
      await mkdir(at);
      mounts.push({ path: e.path, type: 'dir' });
    } else {
      await writeFile(at, '');
      mounts.push({ path: e.path, type: 'file' });
    }
  }
  return { mounts, linked };
}

/**
 * Makes `/workflow/<rel>` free for a mount point: folders on the way must be real folders (a
 * symlink from the code snapshot must not lead the mount elsewhere), and whatever the snapshot had
 * at the path itself gives way to the dep's artifact.
 */
async function clearMountPoint(workflowDir: string, rel: string): Promise<void> {
  const parts = rel.split('/');
  for (let i = 1; i < parts.length; i++) {
    const above = parts.slice(0, i).join('/');
    const abs = join(workflowDir, above);
    const st = await lstat(abs).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (st?.isSymbolicLink()) {
      throw new DstackError('DS0302', `dep artifact '${rel}' would be mounted through the symlink '${above}' of the code`, {
        hint: 'remove the symlink from the code or change the artifact path',
      });
    }
    if (st?.isDirectory()) continue;
    if (st) await rm(abs, { force: true });
    await mkdir(abs);
  }
  await rm(join(workflowDir, rel), { recursive: true, force: true });
}

export interface SaveWithDepsOptions {
  readonly artifacts: readonly ArtifactSpec[];
  /** The deps' top-level paths, mounted read-only over /workflow (`DepMount.path`). */
  readonly depPaths: readonly string[];
  /** Saves paths found under the job's /workflow folder or under its deps folder. */
  readonly save: (from: 'workflow' | 'deps', specs: readonly ArtifactSpec[]) => Promise<Saved>;
}

/** What a save found: the manifest, the paths that were not there, the fifos, sockets and devices left out. */
export interface Saved {
  readonly manifest: Manifest;
  readonly missing: readonly string[];
  readonly skipped: readonly SkippedEntry[];
}

/**
 * A job's artifacts when deps are mounted: a path the deps provided (read-only, so unchanged) is
 * read from the deps' folder, not from its empty mount point in /workflow. Shared by every machine
 * that stages deps this way (local, and the SSH pool's hosts).
 */
export async function saveWithDeps(o: SaveWithDepsOptions): Promise<Saved> {
  const { artifacts, depPaths: mounted } = o;
  const under = (path: string, root: string): boolean => root === '' || path === root || path.startsWith(`${root}/`);
  // Dep paths an artifact covers, and artifacts that lie inside a dep path.
  const fromDeps = new Set<string>();
  for (const m of mounted) if (artifacts.some((a) => under(m, a.path))) fromDeps.add(m);
  for (const a of artifacts) if (mounted.some((m) => a.path !== m && under(a.path, m))) fromDeps.add(a.path);
  const [own, deps] = await Promise.all([
    o.save('workflow', artifacts),
    fromDeps.size ? o.save('deps', [...fromDeps].map((path) => ({ path, mount: false }))) : undefined,
  ]);
  if (!deps) return own;
  const entries = new Map<string, ManifestEntry>();
  for (const e of own.manifest.entries) if (!mounted.some((m) => under(e.path, m))) entries.set(e.path, e);
  for (const e of deps.manifest.entries) entries.set(e.path, e);
  return {
    manifest: makeManifest(entries.values()),
    missing: own.missing.filter((p) => !fromDeps.has(p) || deps.missing.includes(p)),
    skipped: [...own.skipped, ...deps.skipped],
  };
}



/** Tells the user what collecting left out: paths that were not there, fifos, sockets and devices. */
export function notifyUnsaved(ctx: { readonly notify: (n: BackendNotice) => void }, missing: readonly string[], skipped: readonly SkippedEntry[]): void {
  for (const path of missing) ctx.notify({ kind: 'info', message: `artifact '${path}' was not found in /workflow` });
  for (const s of skipped) ctx.notify({ kind: 'info', message: `warning: artifact entry '${s.path}' is a ${s.kind}; not saved` });
}
