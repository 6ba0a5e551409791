/**
 * Artifacts outside `/workflow` (issue 12: a Conda environment under `/opt`, a model cache under `~`)
 * live in the same manifests as the others. An entry says it is outside by its path alone: it starts
 * with `/` (an absolute path in the container) or `~/` (under the container user's home, which may
 * differ between the image that saved it and the one that restores it). Every manifest written
 * before keeps its meaning (no relative path starts with either), and a job whose artifacts are all
 * inside has exactly the entries, tree hash and fingerprint it had.
 *
 * Outside entries are never written on the host under their own path: they go into containers
 * through the engine's archive API (src/backends/docker/archive.ts), where the container's root is
 * the root. So their symlinks may point anywhere (a venv's `bin/python -> /usr/bin/python3`): they
 * are read inside the container, like the code snapshot's own outward links.
 */
import { posix } from 'node:path';
import { WORKDIR } from '../engine/paths.js';
import type { Manifest, ManifestEntry } from './types.js';

/** Kernel and engine file systems, and the code's own folder: nothing there is saved or restored. */
const NOT_OUTSIDE = ['/proc', '/sys', '/dev', WORKDIR];

export const isOutsidePath = (p: string): boolean => p.startsWith('/') || p === '~' || p.startsWith('~/');

/**
 * An outside path as it may appear in a manifest: normalised (`posix.normalize` leaves it as it is),
 * no `.`/`..` component, no NUL, not the root nor under a kernel file system or `/workflow`.
 */
export function isValidOutsidePath(p: string): boolean {
  if (p.includes('\0') || p.endsWith('/')) return false;
  if (p === '~') return true;
  const abs = p.startsWith('~/') ? p.slice(1) : p;
  if (!abs.startsWith('/') || abs === '/' || posix.normalize(abs) !== abs) return false;
  if (abs.split('/').some((c) => c === '..' || c === '.')) return false;
  return !(p.startsWith('/') && NOT_OUTSIDE.some((d) => p === d || p.startsWith(`${d}/`)));
}

/** A symlink target kept in an outside entry: read inside the container, so any non-empty path. */
export const isValidOutsideTarget = (t: unknown): boolean => typeof t === 'string' && t !== '' && !t.includes('\0') && t.length <= 4096;

/** The manifest's entries inside `/workflow` (as a manifest) and outside it (sorted, as stored). */
export function splitOutside(m: Manifest): { readonly inside: Manifest; readonly outside: readonly ManifestEntry[] } {
  if (!m.entries.some((e) => isOutsidePath(e.path))) return { inside: m, outside: [] };
  return {
    inside: manifestOf(m.entries.filter((e) => !isOutsidePath(e.path))),
    outside: m.entries.filter((e) => isOutsidePath(e.path)),
  };
}

/**
 * The deps' outside entries as one tree, later deps winning: a later dep that saved `/opt/venv`
 * replaces an earlier one's `/opt/venv` whole (what the later job saw and changed is what it
 * saved), so nothing the earlier one had under it and the later one deleted comes back.
 */
export function mergeOutside(deps: readonly Manifest[]): ManifestEntry[] {
  const tree = new Map<string, ManifestEntry>();
  for (const m of deps) {
    const { outside } = splitOutside(m);
    for (const root of roots(outside)) {
      for (const p of [...tree.keys()]) if (p === root || p.startsWith(`${root}/`)) tree.delete(p);
    }
    for (const e of outside) tree.set(e.path, e);
  }
  return [...tree.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Entries already sorted, as a manifest (makeManifest without the sort; manifest.ts imports this file). */
function manifestOf(entries: readonly ManifestEntry[]): Manifest {
  let size = 0;
  for (const e of entries) if (e.type === 'file') size += e.size;
  return { version: 1, entries, size };
}

/** The outermost paths of sorted entries (`/opt/venv` of `/opt/venv` and `/opt/venv/bin`). */
export function roots(entries: readonly ManifestEntry[]): string[] {
  const out: string[] = [];
  for (const e of entries) {
    const last = out[out.length - 1];
    if (last !== undefined && (e.path.startsWith(`${last}/`) || last === '/')) continue;
    out.push(e.path);
  }
  return out;
}

/** `~/x` with `home` for `~`; an absolute path stays. */
export function inContainer(p: string, home: string): string {
  if (p === '~') return home;
  return p.startsWith('~/') ? posix.join(home, p.slice(2)) : p;
}
