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
