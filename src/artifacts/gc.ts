/**
 * Garbage collection of the local content-addressed store (`dstack prune`): every object that no
 * record refers to any more, directly or through a listing object, is deleted; so are temp files
 * that crashed writers left in `objects/tmp`.
 */
import { open, readdir, readFile, lstat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { ContentHash } from '../engine/types.js';
import { isContentHash } from './hash.js';

/**
 * Objects modified more recently than this are never deleted: a run in progress writes its
 * objects before it records the manifest that refers to them, so an object that looks
 * unreferenced may be about to be referenced. An hour is far longer than saving any artifact set.
 */
export const MIN_OBJECT_AGE_MS = 3600 * 1000;
/** Temp files of writers that crashed: a live writer renames or removes its file within seconds. */
export const TMP_MAX_AGE_MS = 24 * 3600 * 1000;

/**
 * A listing object is JSON written with JSON.stringify, so it is never longer than the longest
 * string V8 can hold; a bigger object is a plain artifact and is not read.
 */
const MAX_LISTING_BYTES = 512 * 1024 * 1024;
const IO_CONCURRENCY = 16;

export interface GcOptions {
  /** The dstack home; objects live in `objects/sha256/ab/<hash>`. */
  readonly home: string;
  /** Every object a record points at directly: `PruneQueries.referencedObjects()`. */
  readonly roots: ReadonlySet<ContentHash>;
  /** Unreferenced objects younger than this (by mtime) are kept. Default: MIN_OBJECT_AGE_MS. */
  readonly minAgeMs?: number;
  /** Temp files older than this are removed. Default: TMP_MAX_AGE_MS. */
  readonly tmpMaxAgeMs?: number;
  /** Count what would go, delete nothing. */
  readonly dryRun?: boolean;
  /** ms since epoch; for tests. */
  readonly now?: number;
}

export interface GcResult {
  /** Objects deleted (or that would be, with dryRun) and their bytes. */
  readonly objects: number;
  readonly bytes: number;
  /** Objects kept because something refers to them. */
  readonly live: number;
  /** Unreferenced objects kept because they are younger than the guard. */
  readonly young: number;
  /** Temp files deleted and their bytes. */
  readonly tmpFiles: number;
  readonly tmpBytes: number;
}

/**
 * The objects to keep: the roots, and what the roots that are listings refer to. A run's snapshot
 * manifest and a job's inputs listing are objects holding JSON that names further objects (a
 * manifest's `entries[].hash`, or a path → hash map); their exact shape belongs to the writer, so
 * every content hash found anywhere in a root's JSON is kept. A root that is an artifact and
 * happens to be JSON keeps at worst a few objects too many, never too few.
 */
export async function liveObjects(home: string, roots: ReadonlySet<ContentHash>): Promise<Set<ContentHash>> {
  const live = new Set<ContentHash>(roots);
  const limit = pLimit(IO_CONCURRENCY);
  await Promise.all(
    [...roots].map((hash) =>
      limit(async () => {
        if (!isContentHash(hash)) return;
        const json = await readJsonObject(objectPath(home, hash));
        if (json !== undefined) collectHashes(json, live);
      }),
    ),
  );
  return live;
}

export async function collectGarbage(options: GcOptions): Promise<GcResult> {
  const now = options.now ?? Date.now();
  const minAge = options.minAgeMs ?? MIN_OBJECT_AGE_MS;
  const live = await liveObjects(options.home, options.roots);
  const objectsDir = join(options.home, 'objects', 'sha256');
  let objects = 0;
  let bytes = 0;
  let kept = 0;
  let young = 0;

  const limit = pLimit(IO_CONCURRENCY);
  // Shard folders stay even when emptied: a writer creates its shard and then links into it, and
  // removing the folder between the two would fail that write.
  for (const shard of await listDir(objectsDir)) {
    if (!/^[0-9a-f]{2}$/.test(shard)) continue;
    const names = await listDir(join(objectsDir, shard));
    await Promise.all(
      names.map((name) =>
        limit(async () => {
          // Only objects under their own name are ours to judge; anything else is left alone.
          if (!isContentHash(name) || name.slice(0, 2) !== shard) return;
          if (live.has(name)) {
            kept++;
            return;
          }
          const path = join(objectsDir, shard, name);
          const st = await lstat(path).catch(() => undefined);
          if (!st?.isFile()) return;
          if (now - st.mtimeMs < minAge) {
            young++;
            return;
          }
          if (!options.dryRun && !(await removed(path))) return;
          objects++;
          bytes += st.size;
        }),
      ),
    );
  }

  const tmp = await cleanTemp(join(options.home, 'objects', 'tmp'), now, options.tmpMaxAgeMs ?? TMP_MAX_AGE_MS, options.dryRun === true);
  return { objects, bytes, live: kept, young, tmpFiles: tmp.files, tmpBytes: tmp.bytes };
}

async function cleanTemp(dir: string, now: number, maxAge: number, dryRun: boolean): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const name of await listDir(dir)) {
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isFile() || now - st.mtimeMs <= maxAge) continue;
    if (!dryRun && !(await removed(path))) continue;
    files++;
    bytes += st.size;
  }
  return { files, bytes };
}

const objectPath = (home: string, hash: ContentHash): string => join(home, 'objects', 'sha256', hash.slice(0, 2), hash);

/** Parsed JSON when the object holds JSON (an object or array), else undefined; a missing object is undefined too. */
async function readJsonObject(path: string): Promise<unknown> {
  let fh;
  try {
    fh = await open(path, 'r');
    const st = await fh.stat();
    if (!st.isFile() || st.size === 0 || st.size > MAX_LISTING_BYTES) return undefined;
    // Sniff the first bytes so large binary artifacts are not read whole.
    const head = Buffer.alloc(Math.min(64, st.size));
    await fh.read(head, 0, head.length, 0);
    const first = /\S/.exec(head.toString('latin1'))?.[0];
    if (first !== '{' && first !== '[') return undefined;
    await fh.close();
    fh = undefined;
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

function collectHashes(value: unknown, into: Set<ContentHash>): void {
  const stack: unknown[] = [value];
  while (stack.length) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (isContentHash(v)) into.add(v);
    } else if (v !== null && typeof v === 'object') {
      // One at a time: spreading a listing of a million entries would overflow the call stack.
      for (const item of Array.isArray(v) ? v : Object.values(v)) stack.push(item);
    }
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw e;
  }
}

async function removed(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    // Another prune got there first.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}
