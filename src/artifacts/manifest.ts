/**
 * Manifest helpers: ordering, and the checks that make a manifest safe to write under a folder.
 * A manifest may come from a bucket someone else can write to, so nothing in it is trusted.
 */
import { posix } from 'node:path';
import { DstackError } from '../engine/errors.js';
import { insideRelative } from '../engine/paths.js';
import type { Manifest, ManifestEntry } from './types.js';
import { isContentHash } from './hash.js';

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

export function escapingSymlinkError(linkPath: string, target: string): DstackError {
  return new DstackError('DS0302', `symlink '${linkPath}' points outside the working directory (to '${target}')`, {
    hint: 'artifacts may only hold symlinks that resolve inside /workflow; copy the file instead',
  });
}

/** Throws DS0302 on the first entry that could write outside the destination. */
export function validateManifest(manifest: Manifest): void {
  if (manifest.version !== 1 || !Array.isArray(manifest.entries)) {
    throw new DstackError('DS0301', `unsupported manifest version ${String(manifest.version)}`);
  }
  for (const e of manifest.entries) {
    const path = (e as { path?: unknown }).path;
    if (typeof path !== 'string' || path === '' || insideRelative(path) !== path) {
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
        if (typeof e.target !== 'string' || symlinkTargetInside(path, e.target) === undefined) {
          throw escapingSymlinkError(path, String(e.target));
        }
        break;
      default:
        throw new DstackError('DS0302', `artifact entry '${path}' has an unknown type`);
    }
  }
}

const isMode = (m: unknown): m is number => typeof m === 'number' && Number.isInteger(m) && m >= 0 && m <= 0o777;
