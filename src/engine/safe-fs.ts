/**
 * Paths that dstack resolves on a job's behalf — its folder, its `cache:` folders, its deps, the
 * artifacts it saves, a `cp` destination — must never lead out through a symlink the job wrote
 * (issue 7 §1: a job plants `cache/pip -> /home/me` and the next run's `mkdir -p` and bind mount
 * follow it). These are the primitives: every component below a trusted root is checked, and a
 * symlink is refused (DS0305) instead of followed.
 *
 * On Linux the walk holds the folder it reached open and goes on from that descriptor
 * (`/proc/self/fd/N/name` resolves from the open folder, whatever happens to the path meanwhile), so
 * a link swapped in after a check is not followed either. Elsewhere it is lstat, one component at a
 * time. The folders walked here are written by no running job (a job can only write below the
 * folders it is given, and those are leaves of the walk), which is what makes a check before a bind
 * mount enough: the engine resolves the path itself, later.
 */
import { existsSync } from 'node:fs';
import { lstat, mkdir, open, readlink, unlink, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join, posix } from 'node:path';
import { DstackError } from './errors.js';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = constants;
const DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;

let procFd: boolean | undefined;
const hasProcFd = (): boolean => (procFd ??= process.platform === 'linux' && existsSync('/proc/self/fd'));

export interface NoFollowOptions {
  /** What the path is, for the message: "the cache folder of train". */
  readonly what: string;
  /** A file (not a symlink) where a folder is wanted is removed and replaced (artifact entries overwrite). */
  readonly replaceFiles?: boolean;
  /** Mode of the folders made (before the umask). */
  readonly mode?: number;
}

/** The components of a relative path; `..`, absolute paths and NUL are never walked. */
function components(rel: string, what: string): string[] {
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (rel.startsWith('/') || rel.includes('\0') || parts.includes('..')) {
    throw new DstackError('DS0305', `${what}: '${rel}' is not a plain relative path`);
  }
  return parts;
}

export function symlinkRefused(path: string, target: string | undefined, what: string): DstackError {
  return new DstackError('DS0305', `${what}: '${path}' is a symlink${target === undefined ? '' : ` (to '${target}')`}; dstack does not follow symlinks there`, {
    hint: `a job (or someone) put the link there; remove it (\`rm '${path}'\`) and run again`,
  });
}

async function refuseLink(path: string, what: string): Promise<never> {
  const target = await readlink(path).catch(() => undefined);
  throw symlinkRefused(path, target, what);
}

/**
 * Makes `root/rel` a real folder, creating what is missing, without following a symlink anywhere
 * below `root` (`root` itself is the caller's: the dstack home, a destination the user typed).
 * Returns the absolute path. A symlink on the way is DS0305.
 */
export async function mkdirNoFollow(root: string, rel: string, options: NoFollowOptions): Promise<string> {
  const parts = components(rel, options.what);
  const abs = parts.length ? join(root, ...parts) : root;
  if (!hasProcFd()) {
    let cur = root;
    for (const part of parts) {
      cur = join(cur, part);
      await ensureDirAt(cur, cur, options);
    }
    return abs;
  }
  let dir: FileHandle = await open(root, O_RDONLY | O_DIRECTORY);
  try {
    let cur = root;
    for (const part of parts) {
      cur = join(cur, part);
      const via = `/proc/self/fd/${dir.fd}/${part}`;
      await ensureDirAt(via, cur, options);
      const next = await openDir(via, cur, options.what);
      await dir.close();
      dir = next;
    }
    return abs;
  } finally {
    await dir.close().catch(() => undefined);
  }
}

/** Opens a folder without following a final symlink: a link is DS0305, anything else not a folder ENOTDIR. */
async function openDir(via: string, shown: string, what: string): Promise<FileHandle> {
  try {
    return await open(via, DIR_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // O_NOFOLLOW|O_DIRECTORY on a link answers ELOOP or ENOTDIR depending on the kernel.
    if (code === 'ELOOP' || code === 'ENOTDIR') {
      if ((await lstat(via).catch(() => undefined))?.isSymbolicLink()) throw symlinkRefused(shown, await readlink(via).catch(() => undefined), what);
    }
    throw e;
  }
}

/** `path` (reached as `via`) is a real folder afterwards, or this throws. */
async function ensureDirAt(via: string, shown: string, options: NoFollowOptions): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const st = await lstat(via).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (!st) {
      try {
        await mkdir(via, options.mode ?? 0o755);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw e;
      }
    }
    if (st.isDirectory()) return;
    if (st.isSymbolicLink()) throw symlinkRefused(shown, await readlink(via).catch(() => undefined), options.what);
    if (!options.replaceFiles) {
      throw new DstackError('DS0305', `${options.what}: '${shown}' is a file where a folder is wanted`, { hint: `remove it (\`rm '${shown}'\`) and run again` });
    }
    await unlink(via);
  }
  throw new DstackError('DS0305', `${options.what}: could not make the folder '${shown}'`);
}

/**
 * Throws DS0305 when a component of `rel` below `root` that exists is a symlink. Returns whether the
 * whole path exists. For a path handed to someone who resolves it later (the Docker engine's bind
 * mounts): checked right before.
 */
export async function assertNoSymlinks(root: string, rel: string, what: string): Promise<boolean> {
  let cur = root;
  for (const part of components(rel, what)) {
    cur = join(cur, part);
    const st = await lstat(cur).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (!st) return false;
    if (st.isSymbolicLink()) await refuseLink(cur, what);
  }
  return true;
}

/**
 * Opens `path` for reading without following a final symlink (the folders above were walked by the
 * caller). A link is DS0305.
 */
export async function openFileNoFollow(path: string, what: string): Promise<FileHandle> {
  try {
    return await open(path, O_RDONLY | O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') await refuseLink(path, what);
    throw e;
  }
}

export type Resolution =
  | { readonly inside: true; readonly path: string }
  | { readonly inside: false; readonly via: string };

/** Enough hops for any real chain (Linux gives up at 40 as well). */
const MAX_HOPS = 40;

/**
 * Where `rel` (a path under `root`, itself possibly a symlink) ends up when every symlink on the way
 * is followed the way the kernel would inside a container whose `/workflow` is `root`: `..` in a
 * link's target applies to the folder the link is in, an absolute target leaves (it is not under
 * `/workflow` on this machine), a component that does not exist ends the walk (the rest is taken as
 * written). `inside: false` names the link that led out. A loop counts as inside: it resolves to
 * nothing, anywhere.
 */
export async function resolveInside(root: string, rel: string): Promise<Resolution> {
  const done: string[] = [];
  let todo = rel.split('/').filter((p) => p !== '' && p !== '.');
  let hops = 0;
  // The last link followed: the one whose target climbs out when a `..` does.
  let via = rel;
  while (todo.length) {
    const part = todo.shift()!;
    if (part === '..') {
      if (done.length === 0) return { inside: false, via };
      done.pop();
      continue;
    }
    const here = posix.join(...done, part);
    const st = await lstat(join(root, here)).catch(() => undefined);
    if (!st?.isSymbolicLink()) {
      done.push(part);
      if (!st) {
        // Nothing there: the rest is plain names, and only `..` among them can still leave.
        for (const p of todo) {
          if (p === '..') {
            if (done.length === 0) return { inside: false, via };
            done.pop();
          } else if (p !== '.' && p !== '') done.push(p);
        }
        return { inside: true, path: done.join('/') };
      }
      continue;
    }
    if (++hops > MAX_HOPS) return { inside: true, path: here };
    const target = await readlink(join(root, here));
    if (target.startsWith('/')) return { inside: false, via: here };
    via = here;
    todo = [...target.split('/').filter((p) => p !== '' && p !== '.'), ...todo];
  }
  return { inside: true, path: done.join('/') };
}
