/**
 * Saving a bucket remote (`dstack config folder|s3`) in config.json, beside the compute remotes.
 * A bucket never becomes the default remote: `--remote` alone runs jobs, and a bucket runs none.
 */
import type { RemoteConfig } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import type { Remotes } from '../remotes.js';

export async function saveBucketRemote<R extends RemoteConfig>(remotes: Remotes, remote: R, force: boolean): Promise<{ readonly replaced: boolean }> {
  const cfg = await remotes.read();
  const existing = cfg.remotes.find((r) => r.name === remote.name);
  if (existing && !force) {
    throw new DstackError('DS0212', `a remote named '${remote.name}' already exists`, {
      hint: `pass --force to replace it, or delete it first: dstack config delete ${remote.name}`,
    });
  }
  const next = existing ? cfg.remotes.map((r) => (r.name === remote.name ? remote : r)) : [...cfg.remotes, remote];
  const { default: def, ...rest } = cfg;
  const keepDefault = def !== undefined && def !== remote.name;
  await remotes.write({ ...rest, remotes: next, ...(keepDefault ? { default: def } : {}) });
  return { replaced: existing !== undefined };
}
