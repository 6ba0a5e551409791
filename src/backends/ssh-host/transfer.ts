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
import type { SFTPWrapper } from 'ssh2';
import { escapingSymlinkError, makeManifest, symlinkTargetInside } from '../../artifacts/manifest.js';
import type { ArtifactStore, Manifest, ManifestEntry } from '../../artifacts/types.js';
import { DstackError } from '../../engine/errors.js';
import { insideRelative } from '../../engine/paths.js';
import { asContentHash, type ArtifactSpec, type ContentHash } from '../../engine/types.js';
import { artifactFolders } from '../docker/artifact-dirs.js';
import { mergeDeps, topLevel, type DepMount } from '../docker/deps.js';
import type { SshConnection } from './connect.js';
import type { HostLayout } from './host-layout.js';
import { shellQuote } from './shell.js';
import { forEachLimit } from '../../engine/limit.js';

const PARALLEL_FILES = 8;

/** Runs a script with positional arguments; non-zero exits are errors naming the host. */
async function runScript(connection: SshConnection, what: string, script: string, args: readonly string[], stdin?: string): Promise<Buffer> {
  const command = `sh -c ${shellQuote(script)} dstack ${args.map(shellQuote).join(' ')}`;
  const r = await connection.exec(command, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) {
    throw new DstackError('DS0209', `${what} failed on ${connection.label} (exit ${r.code}): ${r.stderr.toString('utf8').trim().slice(0, 500)}`);
  }
  return r.stdout;
}

/**
 * Of `hashes`, those the host's cache lacks. The others get a fresh mtime: the cache is evicted
 * least recently used first (see `evictObjects`). Makes the folders the missing ones will go to.
 */
export async function missingOnHost(connection: SshConnection, layout: HostLayout, hashes: readonly string[]): Promise<string[]> {
  const script = [
    'mkdir -p "$1" "$2" && cd "$1" || exit 3',
    // Present objects go down the pipe to `touch`, missing hashes to fd 3 (stdout).
    '{ while read -r h; do d=${h%"${h#??}"}; if [ -f "$d/$h" ]; then printf "%s\\n" "$d/$h"; else [ -d "$d" ] || mkdir -p "$d"; printf "%s\\n" "$h" >&3; fi; done | xargs -r touch -c --; } 3>&1',
  ].join('\n');
  const out = await runScript(connection, 'looking up the object cache', script, [layout.objects, layout.objectsTmp], hashes.length ? `${hashes.join('\n')}\n` : '');
  return out.toString('utf8').split('\n').filter((h) => /^[0-9a-f]{64}$/.test(h));
}

export interface SentStats {
  readonly bytes: number;
  readonly objects: number;
}

/**
 * Makes sure the host holds every object of `sizes`: uploads only what it lacks, each to a temp name
 * then renamed (so a half upload is never taken for an object), its size checked on arrival.
 */
export async function sendObjects(
  connection: SshConnection,
  layout: HostLayout,
  store: ArtifactStore,
  sizes: ReadonlyMap<string, number>,
  signal: AbortSignal,
): Promise<SentStats> {
  const missing = await missingOnHost(connection, layout, [...sizes.keys()]);
  if (missing.length === 0) return { bytes: 0, objects: 0 };
  const sftp = await connection.sftp();
  let bytes = 0;
  await forEachLimit(missing, PARALLEL_FILES, async (hash) => {
    signal.throwIfAborted();
    const expected = sizes.get(hash) ?? -1;
    const tmp = posix.join(layout.objectsTmp, `${process.pid}-${randomBytes(6).toString('hex')}`);
    const local = store.objectPath(asContentHash(hash));
    try {
      await sftpCall<void>((cb) => sftp.fastPut(local, tmp, { mode: 0o444, concurrency: 16 }, cb));
      const st = await sftpCall<{ size: number }>((cb) => sftp.stat(tmp, cb));
      if (st.size !== expected) throw new DstackError('DS0301', `object ${hash} arrived on ${connection.label} with ${st.size} bytes, not ${expected}`);
      await sftpCall<void>((cb) => sftp.ext_openssh_rename(tmp, layout.objectPath(hash), cb));
      bytes += expected;
    } catch (e) {
      await sftpCall<void>((cb) => sftp.unlink(tmp, cb)).catch(() => undefined);
      throw sftpError(e, connection, `sending object ${hash}`);
    }
  });
  return { bytes, objects: missing.length };
}

export interface StagePlan {
  /** `jobs/<job>`: emptied and made again. */
  readonly jobDir: string;
  readonly snapshot: Manifest;
  readonly deps: readonly Manifest[];
  /** Host folders to make for `cache:` mounts. */
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
  const script: Script = { lines: ['set -e', 'umask 022', `O=${q(layout.objects)}`, `rm -rf -- ${q(plan.jobDir)}`, `mkdir -p -- ${q(W)}`, `cd ${q(W)}`], objects: new Map() };
  const code = snapshotLines(script, plan.snapshot);
  const mounts = plan.deps.length > 0 ? depsLines(script, plan.deps, code, { W, D }) : [];
  batched('mkdir -p', plan.cacheDirs, script.lines);
  // Best effort, as locally: whatever stands in the way (a dep's symlink) is the job's to meet.
  const folders = artifactFolders(plan.artifacts ?? [], { snapshot: plan.snapshot, depPaths: mounts.map((m) => m.path) });
  for (let i = 0; i < folders.length; i += 200) script.lines.push(`mkdir -p -- ${folders.slice(i, i + 200).map((f) => q(posix.join(W, checkedPath(f)))).join(' ')} 2>/dev/null || true`);
  return { workflowDir: W, depsDir: D, mounts, objects: script.objects, script: `${script.lines.join('\n')}\n` };
}

/** A staging script being written, and the objects it reads from the host's cache. */
interface Script {
  readonly lines: string[];
  readonly objects: Map<string, number>;
}

const obj = (hash: string): string => `"$O"/${hash.slice(0, 2)}/${hash}`;
const addParents = (set: Set<string>, p: string): void => {
  for (let d = posix.dirname(p); d !== '.' && !set.has(d); d = posix.dirname(d)) set.add(d);
};

/** The code snapshot into the current folder; its symlinks and files, which the deps' mount points must respect. */
function snapshotLines(script: Script, snapshot: Manifest): { readonly links: ReadonlySet<string>; readonly files: ReadonlySet<string> } {
  const { lines, objects } = script;
  const dirs = new Set<string>();
  const links = new Set<string>();
  const files = new Set<string>();
  for (const e of snapshot.entries) {
    checkedPath(e.path);
    addParents(dirs, e.path);
    if (e.type === 'dir') dirs.add(e.path);
    if (e.type === 'symlink') links.add(e.path);
    if (e.type === 'file') files.add(e.path);
  }
  batched('mkdir -p', [...dirs].sort(), lines);
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
  return { links, files };
}

/** The deps' merged artifacts under D, and their mount points in W. */
function depsLines(script: Script, deps: readonly Manifest[], code: ReturnType<typeof snapshotLines>, at: { readonly W: string; readonly D: string }): DepMount[] {
  const { lines, objects } = script;
  const tree = mergeDeps(deps);
  lines.push(`mkdir -p -- ${q(at.D)}`, `cd ${q(at.D)}`);
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
    } else {
      lines.push(`cp ${obj(e.hash)} ${q(e.path)}`);
      execs.push(e.path);
    }
  }
  batched('chmod 755', execs, lines);
  for (const e of tree.values()) if (e.type === 'symlink') lines.push(`ln -s -- ${q(e.target)} ${q(e.path)}`);
  // Modes last, deepest first, so a read-only folder does not stop its own entries being written.
  for (const d of dirs.sort((a, b) => (a.path < b.path ? 1 : -1))) if (d.mode !== 0o755) lines.push(`chmod ${d.mode.toString(8)} -- ${q(d.path)}`);
  lines.push(`cd ${q(at.W)}`);
  return topLevel(tree).flatMap((e) => mountPoint(lines, e, code) ?? []);
}

/**
 * Makes `/workflow/<path>` free for a dep's mount point (folders on the way must be real folders
 * there) and returns the mount; a symlink is written in place, with nothing to mount.
 */
function mountPoint(lines: string[], e: ManifestEntry, code: ReturnType<typeof snapshotLines>): DepMount | undefined {
  const parts = e.path.split('/');
  for (let i = 1; i < parts.length; i++) {
    const above = parts.slice(0, i).join('/');
    if (code.links.has(above)) {
      throw new DstackError('DS0302', `dep artifact '${e.path}' would be mounted through the symlink '${above}' of the code`, {
        hint: 'remove the symlink from the code or change the artifact path',
      });
    }
    if (code.files.has(above)) lines.push(`rm -f -- ${q(above)}`);
  }
  if (parts.length > 1) lines.push(`mkdir -p -- ${q(posix.dirname(e.path))}`);
  lines.push(`rm -rf -- ${q(e.path)}`);
  if (e.type === 'symlink') {
    lines.push(`ln -s -- ${q(e.target)} ${q(e.path)}`);
    return undefined;
  }
  lines.push(e.type === 'dir' ? `mkdir -- ${q(e.path)}` : `: > ${q(e.path)}`);
  return { path: e.path, type: e.type };
}

/** Runs the staging script on the host: one exec. */
export async function materializeOnHost(connection: SshConnection, staged: StagedOnHost): Promise<void> {
  const r = await connection.exec('sh -s', { stdin: staged.script });
  if (r.code !== 0) {
    throw new DstackError('DS0209', `making the job's folder failed on ${connection.label} (exit ${r.code}): ${r.stderr.toString('utf8').trim().slice(0, 500)}`);
  }
}

interface Listed {
  readonly entries: Map<string, ManifestEntry>;
  /** Paths of files, by hash, for fetching. */
  readonly files: Map<string, string>;
  readonly missing: string[];
}

/** Lists artifact paths under $1 (the rest of the arguments): the tree, then the files' sha256 (see `listOnHost`). */
const LIST_SCRIPT = [
  'cd "$1" || exit 3',
  'shift',
  'printf "R\\0%s\\0" "$(pwd -P)"',
  'for p in "$@"; do',
  '  if [ -e "$p" ] || [ -L "$p" ]; then',
  '    printf "P\\0%s\\0%s\\0" "$p" "$(cd "$(dirname -- "$p")" && pwd -P)"',
  '    find "$p" -printf "%y\\0%m\\0%s\\0%p\\0%l\\0"',
  '    printf "E\\0"',
  '  else printf "M\\0%s\\0" "$p"; fi',
  'done',
  'printf "H\\0"',
  'for p in "$@"; do if [ -e "$p" ] || [ -L "$p" ]; then find "$p" -type f -print0; fi; done | xargs -0 -r sha256sum -z',
].join('\n');

/**
 * The artifact paths under `root` on the host, as the local store would save them: files (exec bit
 * kept), folders (0755), symlinks that resolve inside (escaping ones refused, DS0302), nothing else.
 * One exec: find for the tree, sha256sum for the content.
 */
async function listOnHost(connection: SshConnection, root: string, specs: readonly ArtifactSpec[]): Promise<Listed> {
  const rels = specs.map((s) => {
    const rel = s.path === '' ? '' : insideRelative(s.path);
    if (rel === undefined) {
      throw new DstackError('DS0009', `artifact path '${s.path}' leaves the working directory`, {
        hint: 'artifact paths are relative to the working directory and may not contain `..` that climbs out',
      });
    }
    return rel;
  });

  const out = await runScript(connection, 'listing the artifacts', LIST_SCRIPT, [root, ...rels.map((r) => (r === '' ? '.' : r))]);
  const fields = out.toString('utf8').split('\0');
  const norm = (p: string): string => (p === '.' ? '' : p.startsWith('./') ? p.slice(2) : p);
  const entries = new Map<string, ManifestEntry>();
  const pending = new Map<string, { mode: number; size: number }>();
  const missing: string[] = [];
  let i = 0;
  let realRoot = '';
  const next = (): string => fields[i++] ?? '';
  for (;;) {
    const tag = next();
    if (tag === 'R') realRoot = next();
    else if (tag === 'M') missing.push(norm(next()) || '');
    else if (tag === 'P') {
      const rel = norm(next());
      const parent = next();
      if (rel !== '' && parent !== realRoot && !parent.startsWith(`${realRoot}/`)) {
        throw new DstackError('DS0302', `artifact path '${rel}' is reached through a symlink that leaves the working directory (to '${parent}')`);
      }
      for (;;) {
        const type = next();
        if (type === 'E' || type === '') break;
        const mode = parseInt(next(), 8);
        const size = Number(next());
        const path = norm(next());
        const target = next();
        if (type === 'l') {
          if (symlinkTargetInside(path, target) === undefined) throw escapingSymlinkError(path, target);
          entries.set(path, { type: 'symlink', path, target });
        } else if (type === 'd') {
          if (path !== '') entries.set(path, { type: 'dir', path, mode: 0o755 });
        } else if (type === 'f') {
          pending.set(path, { mode: mode & 0o111 ? 0o755 : 0o644, size });
        }
        // Sockets, fifos and devices are not artifacts.
      }
    } else if (tag === 'H') break;
    else throw new DstackError('DS0209', `unexpected answer from ${connection.label} while listing the artifacts`);
  }
  // `sha256sum -z`: "<hash>  <name>\0" (names unescaped with -z).
  const files = new Map<string, string>();
  for (; i < fields.length; i++) {
    const line = fields[i]!;
    const m = /^([0-9a-f]{64}) [ *](.*)$/s.exec(line);
    if (!m) continue;
    const path = norm(m[2]!);
    const f = pending.get(path);
    if (!f) continue;
    const hash = asContentHash(m[1]!);
    entries.set(path, { type: 'file', path, size: f.size, mode: f.mode, hash });
    files.set(hash, path);
  }
  for (const [path] of pending) {
    if (!entries.has(path)) throw new DstackError('DS0301', `artifact file '${path}' on ${connection.label} could not be read`);
  }
  return { entries, files, missing };
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
): Promise<{ readonly manifest: Manifest; readonly missing: readonly string[] }> {
  const listed = await listOnHost(connection, root, specs);
  // Into the host's cache too (hard links; the job has ended): a dependent job staged on this host
  // then needs none of them sent back up.
  const keep = [...listed.files].filter(([, path]) => !path.includes('\n'));
  if (keep.length > 0) {
    await runScript(
      connection,
      'caching the artifacts',
      'O=$1; R=$2; while IFS=" " read -r h p; do d=$O/${h%"${h#??}"}; [ -f "$d/$h" ] && continue; mkdir -p "$d"; ln -- "$R/$p" "$d/$h" 2>/dev/null || cp -- "$R/$p" "$d/$h"; chmod 444 "$d/$h"; done 2>/dev/null; exit 0',
      [layout.objects, root],
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
  return { manifest: makeManifest(listed.entries.values()), missing: listed.missing };
}

/**
 * Keeps the host's object cache under `maxBytes`: removes the least recently used objects (mtime,
 * refreshed on every use) that no job uses now — none hard-linked into a job's deps folder, none
 * used in the last `guardSeconds` (a job being staged). One exec to list, one to remove.
 */
export async function evictObjects(connection: SshConnection, layout: HostLayout, maxBytes: number, guardSeconds = 600): Promise<{ readonly removed: number; readonly bytes: number }> {
  const out = await runScript(connection, 'sizing the object cache', '[ -d "$1" ] || exit 0\nfind "$1" -type f -printf "%T@ %s %n %p\\0"', [layout.objects]);
  const now = Date.now() / 1000;
  let total = 0;
  const candidates: { at: number; size: number; path: string }[] = [];
  for (const rec of out.toString('utf8').split('\0')) {
    const m = /^(\S+) (\d+) (\d+) (.*)$/s.exec(rec);
    if (!m) continue;
    const size = Number(m[2]);
    total += size;
    const at = Number(m[1]);
    if (Number(m[3]) === 1 && now - at > guardSeconds) candidates.push({ at, size, path: m[4]! });
  }
  if (total <= maxBytes) return { removed: 0, bytes: 0 };
  candidates.sort((a, b) => a.at - b.at);
  const doomed: string[] = [];
  let freed = 0;
  for (const c of candidates) {
    if (total - freed <= maxBytes) break;
    doomed.push(c.path);
    freed += c.size;
  }
  if (doomed.length) await runScript(connection, 'trimming the object cache', 'xargs -0 -r rm -f --', [], `${doomed.join('\0')}\0`);
  return { removed: doomed.length, bytes: freed };
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
