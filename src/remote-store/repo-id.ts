/**
 * A repository's identity in the team bucket: what makes two clones on two machines the same
 * project, so that their runs, tags and cache entries meet. It is the remote URL when the repo has
 * one, normalised (`git@github.com:Acme/data.git`, `https://user:token@github.com/Acme/data` and
 * `ssh://git@github.com/Acme/data.git` are all `github.com/acme/data`), with any credentials it
 * carried dropped; otherwise a stable id written once to `.dstack/repo-id` (commit it, and every
 * clone shares it).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DstackError } from '../engine/errors.js';
import { idFile } from '../engine/id-file.js';

const run = promisify(execFile);

/** The file holding the identity of a project that has no remote URL. */
export const REPO_ID_FILE = join('.dstack', 'repo-id');

/**
 * `host/path` for a git remote URL, lower-cased, without scheme, user, password, port, `.git` or
 * slashes at either end; undefined for something that is not a remote URL (a local path).
 */
export function normaliseRemoteUrl(raw: string): string | undefined {
  const url = raw.trim();
  let host: string;
  let path: string;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(url);
  if (scheme) {
    if (scheme[1]!.toLowerCase() === 'file') return undefined;
    const rest = scheme[2]!;
    const slash = rest.indexOf('/');
    const authority = slash < 0 ? rest : rest.slice(0, slash);
    path = slash < 0 ? '' : rest.slice(slash + 1);
    host = authority.slice(authority.lastIndexOf('@') + 1).replace(/:\d*$/, '');
  } else {
    // scp-like: [user@]host:path — but not a Windows drive or a local path with a colon in it.
    const scp = /^(?:[^@/]+@)?([^:/]+):(?!\/\/)(.+)$/.exec(url);
    if (!scp || scp[1]!.length < 2) return undefined;
    host = scp[1]!;
    path = scp[2]!;
  }
  path = path.replace(/[?#].*$/, '').replace(/\/+$/, '').replace(/\.git$/i, '').replace(/^\/+|\/+$/g, '');
  if (!host || !path) return undefined;
  return `${host}/${path}`.toLowerCase();
}

/** The repository's identity (see the file's comment); writes `.dstack/repo-id` the first time one is needed. */
export async function repoIdentity(root: string): Promise<string> {
  const url = await remoteUrl(root);
  const normal = url === undefined ? undefined : normaliseRemoteUrl(url);
  if (normal) return normal;
  return localIdentity(root);
}

/** `origin`'s URL, else the first remote's; undefined outside git or without remotes. */
async function remoteUrl(root: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('git', ['-C', root, 'config', '--get-regexp', '^remote\\..*\\.url$'], { timeout: 10_000 });
    const urls = stdout
      .split('\n')
      .map((l) => /^remote\.(.+)\.url (.+)$/.exec(l.trim()))
      .filter((m): m is RegExpExecArray => m !== null);
    return (urls.find((m) => m[1] === 'origin') ?? urls[0])?.[2];
  } catch {
    return undefined;
  }
}

const LOCAL_ID = /^local-[0-9a-f]{16,64}$/;

async function localIdentity(root: string): Promise<string> {
  const path = join(root, REPO_ID_FILE);
  const id = await idFile(path, { valid: LOCAL_ID, make: () => `local-${randomBytes(16).toString('hex')}`, mode: 0o644 });
  if (id) return id;
  throw new DstackError('DS0275', `${path} does not hold a repository id (expected local-<hex>)`, {
    hint: `restore it from version control; or remove it to start a new identity (runs pushed under the old one are then not this project's)`,
  });
}

/**
 * Whether `identity` is the repository a cross-repository dep names: `acme/data` (dstack 0.7's
 * `owner/repo`) matches `github.com/acme/data`; a full `github.com/acme/data` matches only itself.
 */
export function identityMatches(identity: string, named: string): boolean {
  const n = named.toLowerCase().replace(/^\/+|\/+$/g, '');
  return identity === n || identity.endsWith(`/${n}`);
}
