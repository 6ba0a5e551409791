/**
 * Saving a bucket remote (`dstack config folder|s3`) in config.json, beside the compute remotes.
 * A bucket never becomes the default remote (`--remote` alone runs jobs; a bucket runs none).
 */
import { checkRemoteName, readConfig, writeConfig } from '../backends/ssh/config.js';
import { DstackError } from '../engine/errors.js';
import type { BucketRemote } from '../remote-store/config.js';

export async function saveBucketRemote(home: string, remote: BucketRemote, force: boolean): Promise<{ readonly replaced: boolean }> {
  checkRemoteName(remote.name);
  const cfg = await readConfig(home);
  const existing = cfg.remotes.find((r) => r.name === remote.name);
  if (existing && !force) {
    throw new DstackError('DS0212', `a remote named '${remote.name}' already exists`, {
      hint: `pass --force to replace it, or delete it first: dstack config delete ${remote.name}`,
    });
  }
  const remotes = existing ? cfg.remotes.map((r) => (r.name === remote.name ? remote : r)) : [...cfg.remotes, remote];
  const { default: def, ...rest } = cfg;
  const keepDefault = def !== undefined && def !== remote.name;
  await writeConfig(home, { ...rest, remotes, ...(keepDefault ? { default: def } : {}) });
  return { replaced: existing !== undefined };
}
