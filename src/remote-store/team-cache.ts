/**
 * The engine's second cache look-up (src/engine/remote-cache.ts) over the team bucket: the cache
 * index of this repository, one listing per fingerprint; a hit's artifacts fetched into the local
 * store, verified. A bucket that cannot be reached turns the look-up off for the rest of the run
 * after one notice: a team bucket that is down costs the cache, never the run.
 */
import { DstackError } from '../engine/errors.js';
import type { ObjectStore } from '../engine/objects.js';
import type { RemoteCache, RemoteHit } from '../engine/remote-cache.js';
import { asJobId } from '../engine/types.js';
import type { TeamStore } from './team-store.js';
import { fetchObjects, filesOf } from './transfer.js';

export interface TeamCacheOptions {
  readonly team: TeamStore;
  readonly repo: string;
  readonly local: ObjectStore;
  /** Told once when the bucket cannot be reached (the look-up is then off). */
  readonly onUnavailable?: (e: DstackError) => void;
}

export function teamCache(o: TeamCacheOptions): RemoteCache {
  let down = false;
  const unavailable = (e: unknown): undefined => {
    if (!(e instanceof DstackError)) throw e;
    if (!down) o.onUnavailable?.(e);
    down = true;
    return undefined;
  };
  return {
    async find(fingerprint, workflow, signal): Promise<RemoteHit | undefined> {
      if (down) return undefined;
      try {
        const entry = await o.team.findCacheHit(o.repo, fingerprint, signal);
        if (!entry) return undefined;
        const manifest = await o.team.getManifest(entry.manifest);
        return { manifest, origin: { run: entry.run, job: asJobId(`${entry.run}/${workflow}`), owner: entry.owner, source: 'bucket' } };
      } catch (e) {
        // A damaged manifest is a miss for this job only; anything else means the bucket is not usable now.
        if (e instanceof DstackError && (e.code === 'DS0265' || e.code === 'DS0266' || e.code === 'DS0264')) return undefined;
        return unavailable(e);
      }
    },
    async fetch(hit, signal): Promise<void> {
      await fetchObjects(o.team.objects, o.local, filesOf([hit.manifest]), signal ? { signal } : {});
    },
  };
}
