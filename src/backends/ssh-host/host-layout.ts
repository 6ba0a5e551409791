/**
 * Where dstack keeps things on a host of the pool: everything under the login user's home, in
 * `$HOME/.dstack/` — the object cache (`objects/sha256/ab/<hash>`, with `objects/tmp/` for uploads
 * in flight), one folder per job (`jobs/<job id, / → _>/{workflow,deps}`), the workflows' `cache:`
 * folders (`cache/<repo key>/<workflow>`) and the leases (`leases/`, lease.ts).
 *
 * Why the home: the job containers run on the host's Docker engine, which resolves bind mounts in
 * the host's filesystem — the one sshd shows the login user. The test hosts share this machine's
 * engine and mount the login home at the same path (test/helpers/ssh-hosts.ts), so the same rule
 * holds there.
 */
import { posix } from 'node:path';
import type { ContentHash } from '../../engine/types.js';
import type { SshConnection } from './connect.js';

export interface HostLayout {
  /** `$HOME/.dstack`. */
  readonly root: string;
  readonly objects: string;
  readonly objectsTmp: string;
  readonly jobs: string;
  readonly cache: string;
  objectPath(hash: ContentHash | string): string;
  jobDir(job: string): string;
}

export function hostLayout(home: string): HostLayout {
  const root = posix.join(home, '.dstack');
  const objects = posix.join(root, 'objects', 'sha256');
  const jobs = posix.join(root, 'jobs');
  return {
    root,
    objects,
    objectsTmp: posix.join(root, 'objects', 'tmp'),
    jobs,
    cache: posix.join(root, 'cache'),
    objectPath: (hash) => posix.join(objects, hash.slice(0, 2), hash),
    jobDir: (job) => posix.join(jobs, job.replace(/[/\\]/g, '_')),
  };
}

/** True when `dir` is a job folder of this layout (never anything else is removed by reap). */
export function isJobDir(layout: HostLayout, dir: string): boolean {
  const n = posix.normalize(dir);
  return n.startsWith(`${layout.jobs}/`) && !n.slice(layout.jobs.length + 1).includes('/') && !n.endsWith('/..') && n !== `${layout.jobs}/..`;
}

const homes = new WeakMap<SshConnection, Promise<HostLayout>>();

/** The host's layout, learning `$HOME` once per connection. */
export function layoutOf(connection: SshConnection): Promise<HostLayout> {
  let known = homes.get(connection);
  if (!known) {
    known = connection.exec('printf %s "$HOME"').then((r) => {
      const home = r.stdout.toString('utf8');
      if (r.code !== 0 || !home.startsWith('/')) throw new Error(`${connection.label} has no usable $HOME (${JSON.stringify(home)})`);
      return hostLayout(home);
    });
    known.catch(() => homes.delete(connection));
    homes.set(connection, known);
  }
  return known;
}
