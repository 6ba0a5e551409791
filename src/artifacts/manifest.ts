/**
 * Manifest helpers: ordering, and the checks that make a manifest safe to write under a folder.
 * A manifest may come from a bucket someone else can write to, so nothing in it is trusted.
 */
import { posix } from 'node:path';
import { DstackError } from '../engine/errors.js';
import { insideRelative } from '../engine/paths.js';
import type { Manifest, ManifestEntry } from './types.js';
import { isContentHash } from './hash.js';
import { isOutsidePath, isValidOutsidePath, isValidOutsideTarget } from './outside.js';

export const comparePaths = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export function makeManifest(entries: Iterable<ManifestEntry>): Manifest {
  const sorted = [...entries].sort((a, b) => comparePaths(a.path, b.path));
  let size = 0;
  for (const e of sorted) if (e.type === 'file') size += e.size;
  return { version: 1, entries: sorted, size };
}

/**
 * Where a symlink at `linkPath` (relative to the root) points, relative to the root; undefined when
 * the target is absolute or climbs out. Lexical, like the link will be read inside the container.
 */
export function symlinkTargetInside(linkPath: string, target: string): string | undefined {
  if (target === '' || target.startsWith('/') || target.includes('\0')) return undefined;
  const joined = posix.join(posix.dirname(linkPath), target);
  const n = posix.normalize(joined);
  if (n === '.') return '';
  return insideRelative(n);
}

/** `detail`: how it gets out when the link alone does not show it ("through the symlink 'b'"). */
export function escapingSymlinkError(linkPath: string, target: string, detail?: string): DstackError {
  return new DstackError('DS0302', `symlink '${linkPath}' points outside the working directory (to '${target}'${detail ? `, ${detail}` : ''})`, {
    hint: 'artifacts may only hold symlinks that resolve inside /workflow; copy the file instead',
  });
}

/** The detail for escapingSymlinkError when the link that leads out is another one. */
export const throughLink = (path: string, via: string): string | undefined => (via === path ? undefined : `through the symlink '${via}'`);

/** Enough hops for any real chain (Linux gives up at 40 too); a longer one is a loop and leads nowhere. */
const MAX_HOPS = 40;

/**
 * The symlinks of `entries` that lead out of the tree when followed through the tree's own links,
 * the way the kernel follows them: `a -> b` with `b -> ../..`, or `l -> d/up/..` with `d/up -> ..`
 * (each link alone looks inside). `via` is the link that left. Lexical for paths the tree does not
 * have. A manifest may come from a bucket someone else can write to: this runs on every one written.
 */
export function escapingLinks(entries: readonly ManifestEntry[]): { readonly path: string; readonly target: string; readonly via: string }[] {
  const links = new Map<string, string>();
  for (const e of entries) if (e.type === 'symlink') links.set(e.path, e.target);
  const out: { path: string; target: string; via: string }[] = [];
  for (const [path, target] of links) {
    const via = leaves(links, path);
    if (via !== undefined) out.push({ path, target, via });
  }
  return out;
}

/** The link through which `path` leaves the tree, or undefined when it stays inside (or loops). */
function leaves(links: ReadonlyMap<string, string>, path: string): string | undefined {
  const done: string[] = [];
  let todo = path.split('/');
  let hops = 0;
  // The last link followed: the one whose target climbs out when a `..` does.
  let via = path;
  while (todo.length) {
    const part = todo.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (done.length === 0) return via;
      done.pop();
      continue;
    }
    const here = [...done, part].join('/');
    const target = links.get(here);
    if (target === undefined) {
      done.push(part);
      continue;
    }
    if (++hops > MAX_HOPS) return undefined;
    if (target.startsWith('/') || target === '') return here;
    via = here;
    todo = [...target.split('/'), ...todo];
  }
  return undefined;
}

/**
 * Throws DS0302 on the first entry that could write outside the destination, or lead out of it. Entries outside
 * `/workflow` (outside.ts) are refused unless `outside` says the caller writes them into a container,
 * never under a host folder.
 */
export function validateManifest(manifest: Manifest, options: { readonly outside?: boolean } = {}): void {
  if (manifest.version !== 1 || !Array.isArray(manifest.entries)) {
    throw new DstackError('DS0301', `unsupported manifest version ${String(manifest.version)}`);
  }
  for (const e of manifest.entries) {
    const path = (e as { path?: unknown }).path;
    const outside = typeof path === 'string' && isOutsidePath(path);
    if (outside && !options.outside) throw new DstackError('DS0302', `artifact entry '${path}' is outside /workflow: it is restored into containers, not written under a folder`);
    if (typeof path !== 'string' || path === '' || (outside ? !isValidOutsidePath(path) : insideRelative(path) !== path)) {
      throw new DstackError('DS0302', `artifact entry '${String(path)}' leaves the working directory`);
    }
    switch (e.type) {
      case 'file':
        if (!isContentHash(e.hash)) throw new DstackError('DS0302', `artifact entry '${path}' has a malformed hash`);
        if (!isMode(e.mode)) throw new DstackError('DS0302', `artifact entry '${path}' has a bad mode`);
        break;
      case 'dir':
        if (!isMode(e.mode)) throw new DstackError('DS0302', `artifact entry '${path}' has a bad mode`);
        break;
      case 'symlink':
        if (outside ? !isValidOutsideTarget(e.target) : typeof e.target !== 'string' || symlinkTargetInside(path, e.target) === undefined) {
          throw escapingSymlinkError(path, String(e.target));
        }
        break;
      default:
        throw new DstackError('DS0302', `artifact entry '${path}' has an unknown type`);
    }
  }
  // Outside entries' links are read inside the container (outside.ts), so only the tree's own are followed.
  const out = escapingLinks(manifest.entries.filter((e) => !isOutsidePath(e.path)))[0];
  if (out) throw escapingSymlinkError(out.path, out.target, throughLink(out.path, out.via));
}

const isMode = (m: unknown): m is number => typeof m === 'number' && Number.isInteger(m) && m >= 0 && m <= 0o777;
