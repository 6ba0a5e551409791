/**
 * The parsed project, cached in the dstack home and keyed by the identity of every file it was
 * loaded from — (path, size, mtime, ctime, inode), like git's index — so a run of an unchanged
 * project skips the YAML parser (not even loaded) and the schema checks.
 *
 * Why: for a 1,000-workflow project, loading (parse, validate, convert) took ~350 ms of a ~900 ms
 * `dstack run --dry-run`, and its module ~20 ms more; a hit reads one file (~5 ms).
 *
 * The entry is the Project as `v8.serialize` writes it (Maps and `undefined` survive, so a hit is
 * exactly what loadProject returns), its diagnostics included: they are plain data, with the
 * offending line kept, so a hit reports a broken workflow exactly as a fresh load would. Only a
 * project with no workflows file (the one error loadProject throws) is not cached. Like the stat
 * cache (artifacts/tree.ts),
 * an entry is not written while a file was modified in the last moments ("racy git": an edit in
 * the same mtime tick, same size, would go unseen). The key also holds the build and Node's
 * version, so a new dstack never reads what an older one wrote.
 */
import { createHash, randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import type { Project } from '../types.js';
import { VARIABLES_FILE, workflowFiles } from './files.js';

export interface ProjectCacheOptions {
  /** The folder holding the entries (one per project root): `<dstack home>/project-cache`. */
  readonly dir: string;
  /** Files modified less than this long ago keep the entry from being written (default 2000 ms). */
  readonly racyMs?: number;
  /** For tests: called with whether the project came from the cache. */
  readonly onLoad?: (hit: boolean) => void;
}

/** Bump when the cached shape changes in a way the build identity would not catch. */
const FORMAT = 2;

interface Entry {
  readonly key: string;
  readonly project: Project;
}

/** `loadProject(root)`, from the cache when no file it reads has changed since it was cached. */
export async function loadProjectCached(root: string, options: ProjectCacheOptions): Promise<Project> {
  const files = await workflowFiles(root);
  const stats = [...files, VARIABLES_FILE].map((f) => ({ f, st: statOrUndefined(join(root, f)) }));
  const key = JSON.stringify([FORMAT, buildId(), root, stats.map(({ f, st }) => (st ? [f, st.kind, `${st.size}`, `${st.mtimeNs}`, `${st.ctimeNs}`, `${st.ino}`] : [f]))]);
  const path = join(options.dir, `${createHash('sha256').update(root).digest('hex').slice(0, 32)}.v8`);

  const cached = await readEntry(path);
  if (cached?.key === key) {
    options.onLoad?.(true);
    return cached.project;
  }
  const { loadProject } = await import('./load.js');
  const project = await loadProject(root);
  options.onLoad?.(false);
  const racyNs = BigInt(options.racyMs ?? 2000) * 1_000_000n;
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  const racy = stats.some(({ st }) => st && (nowNs - st.mtimeNs < racyNs || nowNs - st.ctimeNs < racyNs));
  // A files listing that changed while we read would be caught by the key next time; only the
  // racy window needs care. A cache that cannot be written costs speed, never correctness.
  if (!racy) await writeEntry(options.dir, path, { key, project }).catch(() => undefined);
  return project;
}

/**
 * What is at `path` now (through symlinks): a FIFO, a directory or a device in a file's place is
 * loaded as a diagnostic, so its identity (kind included) keys the entry like a file's does.
 */
function statOrUndefined(path: string): { kind: string; size: bigint; mtimeNs: bigint; ctimeNs: bigint; ino: bigint } | undefined {
  let st;
  try {
    st = statSync(path, { bigint: true, throwIfNoEntry: false });
  } catch {
    return undefined; // a symlink loop, a permission error: not cacheable as a file, still keyed by name
  }
  if (!st) return undefined;
  const kind = st.isFile() ? 'f' : st.isDirectory() ? 'd' : st.isFIFO() ? 'p' : st.isSocket() ? 's' : 'c';
  return { kind, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino };
}

async function readEntry(path: string): Promise<Entry | undefined> {
  try {
    const entry = deserialize(await readFile(path)) as Entry | undefined;
    return typeof entry?.key === 'string' && entry.project ? entry : undefined;
  } catch {
    // Missing, or damaged (a crash mid-write cannot leave one: it is renamed into place; but a
    // file from another Node may not deserialize): parse the files.
    return undefined;
  }
}

async function writeEntry(dir: string, path: string, entry: Entry): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    // Workflows hold env values: readable by the owner only, like the run store.
    await writeFile(tmp, serialize(entry), { mode: 0o600 });
    await rename(tmp, path);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/**
 * What identifies the running dstack's loader: Node's version and the file this code was loaded
 * from (its size and mtime). A build rewrites every file of dist/, so a rebuilt (or upgraded)
 * dstack never trusts an entry written by other code.
 */
let build: string | undefined;
function buildId(): string {
  if (build === undefined) {
    let self = '';
    try {
      const st = statSync(fileURLToPath(import.meta.url), { bigint: true });
      self = `${st.size}:${st.mtimeNs}`;
    } catch {
      // Not loaded from a file: the version alone.
    }
    build = `${process.version}:${self}`;
  }
  return build;
}
