/**
 * Content-addressed objects between the local store and a host's object cache, over one SSH
 * connection, in as few round trips as the work allows:
 *
 * - up: ONE exec asks which of the wanted objects the host lacks (and marks the others used), SFTP
 *   uploads only those (temp name, size checked, renamed into place), ONE exec materializes the job's
 *   folder from the cache with a generated script;
 * - down: ONE exec lists the artifact paths (find + sha256sum), the manifest is built here with the
 *   local store's rules, and SFTP fetches only the objects the local store lacks, checking each hash.
 *
 * Host-side tools: a POSIX sh with GNU coreutils and findutils (any Linux server).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { SFTPWrapper } from 'ssh2';
import { makeManifest } from '../../artifacts/manifest.js';
import { isFileObjectStore, type ArtifactStore, type Manifest, type ManifestEntry, type SkippedEntry } from '../../artifacts/types.js';
import { DstackError } from '../../engine/errors.js';
import { insideRelative } from '../../engine/paths.js';
import { asContentHash, type ArtifactSpec, type ContentHash } from '../../engine/types.js';
import { artifactFolders } from '../docker/artifact-dirs.js';
import { mergeDeps, topLevel, type DepMount } from '../docker/deps.js';
import type { SshConnection } from './connect.js';
import type { HostLayout } from './host-layout.js';
import { runScript, shellQuote } from './shell.js';
import { listOnHost } from './host-listing.js';
import { acceptUploads, checkOnHost, RECORD_PATHS, recordLines, recordsOf } from './object-cache.js';
import { MKDIR_NOFOLLOW, REFUSED_LINK_EXIT, refusedOnHost } from './safe-sh.js';
import { forEachLimit } from '../../engine/limit.js';

const PARALLEL_FILES = 8;


export interface SentStats {
  readonly bytes: number;
  readonly objects: number;
}

/**
 * Makes sure the host holds every object of `sizes`, sound: what it lacks (or holds damaged) is sent,
 * read from the local store only after it is proved sound there, uploaded under a temp name and
 * hashed on the host before it takes its name (checkOnHost, acceptUploads).
 */
export async function sendObjects(
  connection: SshConnection,
  layout: HostLayout,
  store: ArtifactStore,
  sizes: ReadonlyMap<string, number>,
  signal: AbortSignal,
): Promise<SentStats> {
  const { missing } = await checkOnHost(connection, layout, sizes);
  if (missing.length === 0) return { bytes: 0, objects: 0 };
  const sftp = await connection.sftp();
  const objects = store.objects;
  let bytes = 0;
  const uploads: { tmp: string; hash: string }[] = [];
  try {
    await forEachLimit(missing, PARALLEL_FILES, async (hash) => {
      signal.throwIfAborted();
      const size = sizes.get(hash) ?? -1;
      const tmp = posix.join(layout.objectsTmp, `${process.pid}-${randomBytes(6).toString('hex')}`);
      uploads.push({ tmp, hash });
      try {
        if (isFileObjectStore(objects)) {
          // Proved sound first (cheaply when it was hashed before); fastPut reads out of order, so it cannot hash on the way.
          const local = await objects.verifiedPath(asContentHash(hash));
          await sftpCall<void>((cb) => sftp.fastPut(local, tmp, { mode: 0o444, concurrency: 16 }, cb));
        } else {
          await pipeline(objects.get(asContentHash(hash), { size, signal }), sftp.createWriteStream(tmp, { mode: 0o444 }));
        }
      } catch (e) {
        throw sftpError(e, connection, `sending object ${hash}`);
      }
      bytes += size;
    });
  } catch (e) {
    await runScript(connection, 'removing partial uploads', 'cd "$1" && xargs -r rm -f --', [layout.objectsTmp], uploads.map((u) => `${posix.basename(u.tmp)}\n`).join('')).catch(() => undefined);
    throw e;
  }
  const wrong = await acceptUploads(connection, layout, uploads);
  if (wrong.length > 0) {
    throw new DstackError('DS0307', `${wrong.length === 1 ? `object ${wrong[0]}` : `${wrong.length} objects`} arrived on ${connection.label} with other bytes than were sent`, {
      hint: 'the connection or the disk on that host damages data; run the job again, or take the host out of the pool',
    });
  }
  return { bytes, objects: missing.length };
}

export interface StagePlan {
  /** `jobs/<job>`: emptied and made again. */
  readonly jobDir: string;
  readonly snapshot: Manifest;
  readonly deps: readonly Manifest[];
  /** Host folders to make for `cache:` mounts, under `layout.root`. */
  readonly cacheDirs: readonly string[];
  /** The job's artifacts: their folders are made in /workflow before it starts (artifact-dirs.ts). */
  readonly artifacts?: readonly ArtifactSpec[];
}

export interface StagedOnHost {
  readonly workflowDir: string;
  readonly depsDir: string;
  readonly mounts: readonly DepMount[];
  /** Every object the job's folder is made from, with its size. */
  readonly objects: ReadonlyMap<string, number>;
  /** The script that makes the job's folder from the object cache. */
  readonly script: string;
  /** Objects hard-linked into the job's deps folder: its removal keeps their records (removeJobDirOnHost). */
  readonly linked: readonly string[];
}

const q = shellQuote;

/** `cmd -- a b c …` in chunks, so no command line grows without bound. */
function batched(cmd: string, paths: readonly string[], out: string[]): void {
  for (let i = 0; i < paths.length; i += 200) out.push(`${cmd} -- ${paths.slice(i, i + 200).map(q).join(' ')}`);
}

const checkedPath = (p: string): string => {
  if (insideRelative(p) !== p) throw new DstackError('DS0302', `entry '${p}' leaves the working directory`);
  return p;
};

/** An object of the host's cache, for the staging script (`$O` is the cache folder). */
const obj = (hash: string): string => `"$O"/${hash.slice(0, 2)}/${hash}`;

const addParents = (set: Set<string>, p: string): void => {
  for (let d = posix.dirname(p); d !== '.' && !set.has(d); d = posix.dirname(d)) set.add(d);
};

/** The code snapshot into the current folder (the job's /workflow): copies from the cache, symlinks last. */
function snapshotLines(snapshot: Manifest, lines: string[], objects: Map<string, number>): { snapLinks: Set<string>; snapFiles: Set<string> } {
  const snapDirs = new Set<string>();
  const snapLinks = new Set<string>();
  const snapFiles = new Set<string>();
  for (const e of snapshot.entries) {
    checkedPath(e.path);
    addParents(snapDirs, e.path);
    if (e.type === 'dir') snapDirs.add(e.path);
    if (e.type === 'symlink') snapLinks.add(e.path);
    if (e.type === 'file') snapFiles.add(e.path);
  }
  batched('mkdir -p', [...snapDirs].sort(), lines);
  const plain: string[] = [];
  const exec: string[] = [];
  for (const e of snapshot.entries) {
    if (e.type !== 'file') continue;
    objects.set(e.hash, e.size);
    lines.push(`cp ${obj(e.hash)} ${q(e.path)}`);
    ((e.mode & 0o111) !== 0 ? exec : plain).push(e.path);
  }
  batched('chmod 644', plain, lines);
  batched('chmod 755', exec, lines);
  // Symlinks last, so nothing above is written through one (the code's own outward links are kept).
  for (const e of snapshot.entries) if (e.type === 'symlink') lines.push(`ln -s -- ${q(e.target)} ${q(e.path)}`);
  return { snapLinks, snapFiles };
}

/**
 * The job's folder as one shell script, the same tree the local backend makes (materializeSnapshot
 * then stageDeps): the code copied from the cache (copies, because /workflow is writable and a job
 * writing through a hard link would change the cached object), then the deps' merged artifacts as
 * hard links under `deps/` (copies for executables, whose mode a shared inode cannot carry), each
 * top-level path left as an empty mount point in `workflow/` to be bind-mounted read-only.
 */
export function stagePlan(layout: HostLayout, plan: StagePlan): StagedOnHost {
  const W = posix.join(plan.jobDir, 'workflow');
  const D = posix.join(plan.jobDir, 'deps');
  const objects = new Map<string, number>();
  const linked: string[] = [];
  // Made one component at a time from the layout's root, refusing any symlink on the way (safe-sh.ts).
  const lines: string[] = [MKDIR_NOFOLLOW, 'set -e', 'umask 022', `O=${q(layout.objects)}`, `rm -rf -- ${q(plan.jobDir)}`, `mkdir_nofollow ${q(layout.root)} ${q(underRoot(layout, W))}`, `cd ${q(W)}`];

  const { snapLinks, snapFiles } = snapshotLines(plan.snapshot, lines, objects);

  // The deps' artifacts.
  const mounts: DepMount[] = [];
  if (plan.deps.length > 0) {
    const tree = mergeDeps(plan.deps);
    lines.push(`mkdir -p -- ${q(D)}`, `cd ${q(D)}`);
    const dirs = [...tree.values()].filter((e): e is Extract<ManifestEntry, { type: 'dir' }> => e.type === 'dir');
    const depDirs = new Set<string>(dirs.map((d) => d.path));
    for (const e of tree.values()) addParents(depDirs, e.path);
    batched('mkdir -p', [...depDirs].sort(), lines);
    const execs: string[] = [];
    for (const e of tree.values()) {
      if (e.type !== 'file') continue;
      objects.set(e.hash, e.size);
      if ((e.mode & 0o111) === 0) {
        lines.push(`ln ${obj(e.hash)} ${q(e.path)}`);
        linked.push(e.hash);
      } else {
        lines.push(`cp ${obj(e.hash)} ${q(e.path)}`);
        execs.push(e.path);
      }
    }
    batched('chmod 755', execs, lines);
    for (const e of tree.values()) if (e.type === 'symlink') lines.push(`ln -s -- ${q(e.target)} ${q(e.path)}`);
    // Modes last, deepest first, so a read-only folder does not stop its own entries being written.
    for (const d of dirs.sort((a, b) => (a.path < b.path ? 1 : -1))) if (d.mode !== 0o755) lines.push(`chmod ${d.mode.toString(8)} -- ${q(d.path)}`);

    // Mount points in /workflow: folders on the way must be real folders there.
    lines.push(`cd ${q(W)}`);
    for (const e of topLevel(tree)) {
      const parts = e.path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const above = parts.slice(0, i).join('/');
        if (snapLinks.has(above)) {
          throw new DstackError('DS0302', `dep artifact '${e.path}' would be mounted through the symlink '${above}' of the code`, {
            hint: 'remove the symlink from the code or change the artifact path',
          });
        }
        if (snapFiles.has(above)) lines.push(`rm -f -- ${q(above)}`);
      }
      if (parts.length > 1) lines.push(`mkdir -p -- ${q(posix.dirname(e.path))}`);
      lines.push(`rm -rf -- ${q(e.path)}`);
      if (e.type === 'symlink') {
        lines.push(`ln -s -- ${q(e.target)} ${q(e.path)}`);
      } else if (e.type === 'dir') {
        lines.push(`mkdir -- ${q(e.path)}`);
        mounts.push({ path: e.path, type: 'dir' });
      } else {
        lines.push(`: > ${q(e.path)}`);
        mounts.push({ path: e.path, type: 'file' });
      }
    }
  }
  for (const dir of plan.cacheDirs) lines.push(`mkdir_nofollow ${q(layout.root)} ${q(underRoot(layout, dir))}`);
  lines.push(...recordLines(layout, linked));
  // Best effort, as locally: whatever stands in the way (a symlink) is the job's to meet; never followed.
  const folders = artifactFolders(plan.artifacts ?? [], { snapshot: plan.snapshot, depPaths: mounts.map((m) => m.path) });
  for (const f of folders) lines.push(`(mkdir_nofollow ${q(W)} ${q(checkedPath(f))}) 2>/dev/null || true`);
  return { workflowDir: W, depsDir: D, mounts, objects, linked, script: `${lines.join('\n')}\n` };
}

/** `path` relative to the layout's root, which it must be under. */
function underRoot(layout: HostLayout, path: string): string {
  const rel = posix.relative(layout.root, posix.normalize(path));
  if (rel === '' || rel.startsWith('..') || posix.isAbsolute(rel)) throw new Error(`${path} is not under ${layout.root}`);
  return rel;
}

/** Runs the staging script on the host: one exec. */
export async function materializeOnHost(connection: SshConnection, staged: StagedOnHost): Promise<void> {
  const r = await connection.exec('sh -s', { stdin: staged.script });
  if (r.code === REFUSED_LINK_EXIT) throw refusedOnHost(connection.label, r.stderr.toString('utf8'));
  if (r.code !== 0) {
    throw new DstackError('DS0209', `making the job's folder failed on ${connection.label} (exit ${r.code}): ${r.stderr.toString('utf8').trim().slice(0, 500)}`);
  }
}

export interface ReceivedStats {
  readonly bytes: number;
  readonly objects: number;
}

/**
 * Saves the artifact paths under `root` on the host into the local store: listed there, fetched
 * here only for the objects the store lacks, each checked against its hash.
 */
export async function receiveArtifacts(
  connection: SshConnection,
  layout: HostLayout,
  root: string,
  specs: readonly ArtifactSpec[],
  store: ArtifactStore,
  stats?: { bytes: number; objects: number },
): Promise<{ readonly manifest: Manifest; readonly missing: readonly string[]; readonly skipped: readonly SkippedEntry[] }> {
  const listed = await listOnHost(connection, root, specs);
  // Into the host's cache too (hard links; the job has ended): a dependent job staged on this host
  // then needs none of them sent back up.
  const keep = [...listed.files].filter(([, path]) => !path.includes('\n'));
  if (keep.length > 0) {
    await runScript(
      connection,
      'caching the artifacts',
      // sha256sum just read these bytes (the job has ended), so each new object is recorded as verified.
      [
        'O=$1; R=$2; V=$3; L=$(mktemp) || exit 0',
        'while IFS=" " read -r h p; do d=$O/${h%"${h#??}"}; [ -f "$d/$h" ] && continue; mkdir -p "$d"; { ln -- "$R/$p" "$d/$h" 2>/dev/null || cp -- "$R/$p" "$d/$h"; } && chmod 444 "$d/$h" && printf "%s\\n" "$d/$h" >> "$L"; done 2>/dev/null',
        `${RECORD_PATHS} < "$L"; rm -f "$L"; exit 0`,
      ].join('\n'),
      [layout.objects, root, recordsOf(layout)],
      keep.map(([hash, path]) => `${hash} ${path}\n`).join(''),
    ).catch(() => undefined);
  }
  const wanted: [string, string][] = [];
  for (const [hash, path] of listed.files) if (!(await store.has(asContentHash(hash)))) wanted.push([hash, path]);
  if (wanted.length > 0) {
    const sftp = await connection.sftp();
    const dir = await mkdtemp(join(tmpdir(), 'dstack-fetch-'));
    try {
      await forEachLimit(wanted, PARALLEL_FILES, async ([hash, path]) => {
        const local = join(dir, hash);
        try {
          await sftpCall<void>((cb) => sftp.fastGet(posix.join(root, path), local, { concurrency: 16 }, cb));
        } catch (e) {
          throw sftpError(e, connection, `fetching artifact '${path}'`);
        }
        const got = await store.putFile(local);
        await rm(local, { force: true });
        if (got.hash !== hash) {
          throw new DstackError('DS0301', `artifact '${path}' changed on ${connection.label} while it was being collected (expected sha256 ${hash}, got ${got.hash})`);
        }
        if (stats) {
          stats.bytes += got.size;
          stats.objects += 1;
        }
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return { manifest: makeManifest(listed.entries.values()), missing: listed.missing, skipped: listed.skipped };
}

function sftpCall<T>(fn: (cb: (err: Error | null | undefined, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
}

function sftpError(e: unknown, connection: SshConnection, what: string): unknown {
  if (e instanceof DstackError) return e;
  if (connection.closed) return new DstackError('DS0208', `lost the SSH connection to ${connection.label} while ${what}`, { cause: e });
  return new DstackError('DS0209', `${what} over SFTP failed on ${connection.label}: ${(e as Error).message}`, { cause: e });
}

export type { SFTPWrapper, ContentHash };
