/**
 * The team bucket a command works with: the bucket remote named by `--remote`, else the only one
 * configured (a bucket remote, or an AWS remote's bucket), else the default remote when it has one.
 * Opened lazily: nothing here loads the S3 SDK until a command asks for the bucket.
 */
import { DstackError } from '../engine/errors.js';
import { bucketOf, openBucket, type BucketRemote } from '../remote-store/config.js';
import type { TeamStore } from '../remote-store/team-store.js';

const ADD_ONE = 'add one: dstack config folder --name team --path /mnt/team, or dstack config s3 --name team --bucket BUCKET';

/** The team bucket's remote; DS0267/DS0268/DS0211 when there is none to be had. */
export async function teamRemote(home: string, name?: string): Promise<BucketRemote> {
  const { registry } = await import('../backends/index.js');
  const cfg = await registry.remotes(home).read();
  if (name !== undefined) {
    const found = cfg.remotes.find((r) => r.name === name);
    if (!found) {
      const known = cfg.remotes.map((r) => r.name);
      throw new DstackError('DS0211', `no remote named '${name}'`, { hint: known.length ? `configured remotes: ${known.join(', ')} (see \`dstack config list\`)` : ADD_ONE });
    }
    const bucket = bucketOf(found);
    if (!bucket) throw new DstackError('DS0268', `remote '${name}' (${found.kind}) has no bucket to keep runs in`, { hint: `name a bucket remote with --remote, or ${ADD_ONE}` });
    return bucket;
  }
  const buckets = cfg.remotes.map((r) => bucketOf(r)).filter((b): b is BucketRemote => b !== undefined);
  if (buckets.length === 1) return buckets[0]!;
  if (buckets.length === 0) throw new DstackError('DS0267', 'no team bucket is configured', { hint: ADD_ONE });
  const byDefault = buckets.find((b) => b.name === cfg.default);
  if (byDefault) return byDefault;
  throw new DstackError('DS0267', `several team buckets are configured (${buckets.map((b) => b.name).join(', ')})`, { hint: 'name one with --remote NAME' });
}

/**
 * The team bucket when one can be chosen without asking: for a run on a remote that has a bucket of
 * its own (an AWS remote's `bucket`), that one; else the only one, or the default remote's.
 * Undefined otherwise (no error).
 */
export async function defaultTeamRemote(home: string, backendId?: string): Promise<BucketRemote | undefined> {
  try {
    const colon = backendId?.indexOf(':') ?? -1;
    if (colon > 0) {
      const { registry } = await import('../backends/index.js');
      const own = (await registry.remotes(home).read()).remotes.find((r) => r.kind === backendId!.slice(0, colon) && r.name === backendId!.slice(colon + 1));
      const bucket = own && bucketOf(own);
      if (bucket) return bucket;
    }
    return await teamRemote(home);
  } catch (e) {
    if (e instanceof DstackError && (e.code === 'DS0267' || e.code === 'DS0210')) return undefined;
    throw e;
  }
}

export async function openTeam(remote: BucketRemote): Promise<TeamStore> {
  const [{ TeamStore }, bucket] = await Promise.all([import('../remote-store/team-store.js'), openBucket(remote)]);
  return new TeamStore(bucket, remote.name);
}

/** `fn` with the team store of `remote`, its bucket closed after whatever happens. */
export async function withTeam<T>(remote: BucketRemote, fn: (team: TeamStore) => Promise<T>): Promise<T> {
  const team = await openTeam(remote);
  try {
    return await fn(team);
  } finally {
    await team.bucket.close();
  }
}

/** The repository identity of a project folder (its remote URL, or `.dstack/repo-id`). */
export async function repoOf(root: string): Promise<string> {
  const { repoIdentity } = await import('../remote-store/repo-id.js');
  return repoIdentity(root);
}
