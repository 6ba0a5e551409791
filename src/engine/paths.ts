import { posix } from 'node:path';

/**
 * Normalises a path that must stay inside the job's working tree (`/workflow`): an artifact, a
 * `working_dir`, an `inputs:` entry. Returns the `/`-separated relative form without `./`
 * ('' for the root itself), or undefined when it is absolute or climbs out (`../x`, `a/../../b`).
 */
export function insideRelative(p: string): string | undefined {
  if (p === '' || p.includes('\0')) return undefined;
  const s = p.replace(/\\/g, '/');
  if (s.startsWith('/') || s.startsWith('~')) return undefined;
  const n = posix.normalize(s);
  if (n === '..' || n.startsWith('../')) return undefined;
  if (n === '.' || n === './') return '';
  return n.replace(/^\.\//, '').replace(/\/+$/, '');
}

/** Where the code is mounted in the container: an absolute path under it is a relative one. */
export const WORKDIR = '/workflow';

/** Kernel file systems: nothing there is a result to keep. */
const NOT_SAVED = ['/proc', '/sys', '/dev'];

/**
 * An artifact path: inside `/workflow` (relative, normalised as `insideRelative` does) or, as dstack
 * 0.7 allowed for a Conda environment or a model cache, an absolute path in the container
 * (`/opt/conda/envs/myenv`) or one under its user's home (`~/.cache/x`), kept normalised with
 * `absolute: true`. An absolute path under `/workflow` is the relative path it names.
 */
export function artifactPath(p: string): { readonly path: string; readonly absolute?: true } | { readonly error: string } {
  const leaves = { error: 'leaves the working directory' };
  if (p === '' || p.includes('\0')) return { error: 'is not a path' };
  const s = p.replace(/\\/g, '/');
  if (s === '~' || s.startsWith('~/')) {
    const rest = posix.normalize(s.slice(2) || '.');
    if (rest === '..' || rest.startsWith('../')) return leaves;
    return { path: rest === '.' ? '~' : `~/${rest.replace(/\/+$/, '')}`, absolute: true };
  }
  if (s.startsWith('~')) return { error: 'names another user\'s home; use ~/PATH or an absolute path' };
  if (!s.startsWith('/')) {
    const rel = insideRelative(s);
    return rel === undefined ? leaves : { path: rel };
  }
  const n = posix.normalize(s).replace(/(.)\/+$/, '$1');
  if (n === WORKDIR || n.startsWith(`${WORKDIR}/`)) return { path: insideRelative(`.${n.slice(WORKDIR.length)}`) ?? '' };
  if (n === '/' || NOT_SAVED.some((d) => n === d || n.startsWith(`${d}/`))) return { error: 'is not a folder whose content can be kept' };
  return { path: n, absolute: true };
}
