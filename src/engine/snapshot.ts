/**
 * The code snapshot: the files a run sees at `/workflow`. In a git repo, tracked plus
 * untracked-not-ignored files (what `git ls-files --cached --others --exclude-standard` lists),
 * minus files deleted in the work tree and paths matched by `.dstackignore`; outside git, every file
 * but `.git/`. Also records where the code came from (branch, commit, a hash of the uncommitted diff).
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import { execFile, spawn } from 'node:child_process';
import ignore, { type Ignore } from 'ignore';
import { DstackError } from './errors.js';
import type { Snapshot, SnapshotFile } from './snapshot-types.js';
import type { RepoInfo } from './types.js';
import { forEachLimit } from './limit.js';

const DSTACKIGNORE = '.dstackignore';
const IO_CONCURRENCY = 32;
const CHUNK = 1 << 20;

export async function takeSnapshot(root: string): Promise<Snapshot> {
  const abs = resolve(root);
  const git = await gitListing(abs);
  if (!git) {
    const files = await walkPlain(abs);
    return { root: abs, files, repo: { root: abs, isGit: false } };
  }
  const ignored = await dstackIgnore(abs, git.paths);
  const kept = git.paths.filter((p) => !ignored(p));
  const files = sortByPath(await statAll(abs, kept));
  const untracked = files.filter((f) => git.untracked.has(f.path));
  const diffHash = await hashDiff(abs, git, untracked);
  const repo: RepoInfo = { root: abs, isGit: true, branch: git.branch, commit: git.commit, diffHash };
  return { root: abs, files, repo };
}

interface GitListing {
  /** Relative to the snapshot root. */
  readonly paths: readonly string[];
  readonly untracked: ReadonlySet<string>;
  readonly branch: string | undefined;
  readonly commit: string | undefined;
  /** Tracked changes under the root (staged or not) exist, so `git diff` is worth running. */
  readonly trackedChanges: boolean;
}

/** Two git calls, in parallel; undefined when `root` is not inside a git work tree. */
async function gitListing(root: string): Promise<GitListing | undefined> {
  const [status, ls] = await Promise.all([
    git(root, ['--no-optional-locks', 'status', '--porcelain=v2', '-z', '--branch', '--untracked-files=no', '--no-renames', '--', '.']),
    git(root, ['ls-files', '-z', '-t', '--cached', '--others', '--exclude-standard']),
  ]);
  if (status.exitCode !== 0 || ls.exitCode !== 0) {
    if (/not a git repository/i.test(status.stderr + ls.stderr)) return undefined;
    throw new DstackError('DS0301', `git failed in ${root}: ${(status.stderr || ls.stderr).trim()}`, {
      hint: 'check that `git status` works in this folder',
    });
  }
  let branch: string | undefined;
  let commit: string | undefined;
  let trackedChanges = false;
  for (const rec of status.stdout.split('\0')) {
    if (rec === '') continue;
    if (rec.startsWith('# branch.oid ')) {
      const oid = rec.slice('# branch.oid '.length);
      commit = oid === '(initial)' ? undefined : oid;
    } else if (rec.startsWith('# branch.head ')) {
      const head = rec.slice('# branch.head '.length);
      branch = head === '(detached)' ? undefined : head;
    } else if (!rec.startsWith('#')) {
      trackedChanges = true;
    }
  }
  const seen = new Set<string>();
  const paths: string[] = [];
  const untracked = new Set<string>();
  for (const rec of ls.stdout.split('\0')) {
    // `-t` prefixes a one-letter tag and a space: `H` cached, `?` untracked, `S`/`M`… other states.
    if (rec.length < 3) continue;
    const tag = rec[0];
    const p = rec.slice(2);
    // A nested repository or submodule is listed as a folder; its files are not ours to snapshot.
    if (p.endsWith('/') || seen.has(p)) continue;
    seen.add(p);
    paths.push(p);
    if (tag === '?') untracked.add(p);
  }
  return { paths, untracked, branch, commit, trackedChanges };
}

// node:child_process rather than execa here: this runs on every `dstack run`, and loading execa
// costs ~30 ms of the start-up budget for two plain calls.
function git(cwd: string, args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile('git', args, { cwd, maxBuffer: 1 << 30, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = (error as NodeJS.ErrnoException | null)?.code;
      if (error && typeof code !== 'number') {
        reject(
          new DstackError('DS0301', `could not run git in ${cwd}: ${error.message}`, {
            hint: 'install git, or run from a folder that is not a git repository',
            cause: error,
          }),
        );
        return;
      }
      resolve({ exitCode: typeof code === 'number' ? code : 0, stdout, stderr });
    });
  });
}

/**
 * sha256 over `git diff HEAD --binary` (scoped to the snapshot root) and the untracked files that
 * made it into the snapshot: their paths and contents. Undefined when there is neither.
 */
async function hashDiff(root: string, listing: GitListing, untracked: readonly SnapshotFile[]): Promise<string | undefined> {
  if (!listing.trackedChanges && untracked.length === 0) return undefined;
  const h = createHash('sha256');
  let any = false;
  if (listing.trackedChanges) {
    // A repo with no commit yet diffs against the empty tree.
    const base = listing.commit ?? (await git(root, ['hash-object', '-t', 'tree', '/dev/null'])).stdout.trim();
    const args = ['diff', base, '--binary', '--no-color', '--no-ext-diff', '--no-textconv', '--no-relative', '--', '.'];
    const sub = spawn('git', args, { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] });
    sub.stdout.on('data', (chunk: Buffer) => {
      if (chunk.length > 0) any = true;
      h.update(chunk);
    });
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      sub.once('error', reject);
      sub.once('close', resolve);
    });
    if (exitCode !== 0) throw new DstackError('DS0301', `git diff failed in ${root}`);
  }
  for (const f of untracked) {
    any = true;
    h.update(`\0untracked\0${f.path}\0${f.mode.toString(8)}\0`);
    if (f.link !== undefined) h.update(`link\0${f.link}\0`);
    else await hashInto(h, join(root, f.path));
  }
  return any ? h.digest('hex') : undefined;
}

async function hashInto(h: Hash, path: string): Promise<void> {
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) h.update(chunk as Buffer);
}

/** `.dstackignore` at the root and in any listed subfolder, each applying below its own folder. */
async function dstackIgnore(root: string, paths: readonly string[]): Promise<(p: string) => boolean> {
  const files = paths.filter((p) => p === DSTACKIGNORE || p.endsWith(`/${DSTACKIGNORE}`));
  const rules: { dir: string; ig: Ignore }[] = [];
  for (const f of files) {
    const text = await readFile(join(root, f), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const dir = posix.dirname(f);
    rules.push({ dir: dir === '.' ? '' : `${dir}/`, ig: ignore().add(text) });
  }
  if (rules.length === 0) return () => false;
  return (p) => rules.some((r) => p.startsWith(r.dir) && p.length > r.dir.length && r.ig.ignores(p.slice(r.dir.length)));
}

async function statAll(root: string, paths: readonly string[]): Promise<SnapshotFile[]> {
  const out: SnapshotFile[] = [];
  await forEachLimit(paths, IO_CONCURRENCY, async (p) => {
    const f = await statOne(root, p);
    if (f) out.push(f);
  });
  return out;
}

async function statOne(root: string, p: string): Promise<SnapshotFile | undefined> {
  const abs = join(root, p);
  let st;
  try {
    st = await lstat(abs);
  } catch (e) {
    // Tracked but deleted in the work tree (or replaced by a path under a now-missing folder).
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw e;
  }
  if (st.isSymbolicLink()) return { path: p, size: 0, mode: 0o644, link: await readlink(abs) };
  if (!st.isFile()) return undefined;
  return { path: p, size: st.size, mode: st.mode & 0o111 ? 0o755 : 0o644 };
}

/** Outside git: every file under root except `.git/` folders and `.dstackignore` matches. */
async function walkPlain(root: string): Promise<SnapshotFile[]> {
  const rules: { dir: string; ig: Ignore }[] = [];
  const ignored = (p: string, isDir: boolean): boolean =>
    rules.some((r) => p.startsWith(r.dir) && r.ig.ignores(p.slice(r.dir.length) + (isDir ? '/' : '')));
  const out: SnapshotFile[] = [];
  const walk = async (rel: string): Promise<void> => {
    const dirAbs = rel === '' ? root : join(root, rel);
    const entries = await readdir(dirAbs, { withFileTypes: true });
    const ign = entries.find((e) => e.name === DSTACKIGNORE && e.isFile());
    if (ign) {
      const text = await readFile(join(dirAbs, DSTACKIGNORE), 'utf8');
      rules.push({ dir: rel === '' ? '' : `${rel}/`, ig: ignore().add(text) });
    }
    const subdirs: string[] = [];
    const files: string[] = [];
    for (const e of entries) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) {
        if (e.name !== '.git' && !ignored(p, true)) subdirs.push(p);
      } else if ((e.isFile() || e.isSymbolicLink()) && !ignored(p, false)) {
        files.push(p);
      }
    }
    await forEachLimit(files, IO_CONCURRENCY, async (p) => {
      const f = await statOne(root, p);
      if (f) out.push(f);
    });
    for (const d of subdirs) await walk(d);
  };
  await walk('');
  return sortByPath(out);
}

function sortByPath<T extends { readonly path: string }>(xs: T[]): T[] {
  return xs.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

