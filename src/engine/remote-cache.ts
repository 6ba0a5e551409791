/**
 * The second place a cache decision looks, after the local index: a team's records (the bucket,
 * src/remote-store). One cache for local and remote runs — a job whose fingerprint matches a
 * successful job a teammate pushed (or a remote run recorded) is reused, its artifacts fetched
 * instead of recomputed. The engine sees only this interface; the CLI gives the executor and
 * `--explain` an implementation over the configured bucket, or none.
 */
import type { Manifest } from './objects.js';
import type { Fingerprint, JobId } from './types.js';

/** Who made a hit found in the team's records, for "cached by alice's run wet-lion-3 (bucket)". */
export interface RemoteOrigin {
  /** The run's name in the bucket. */
  readonly run: string;
  /** `run/workflow`. */
  readonly job: JobId;
  readonly owner: string;
  /** Where it was found, as the messages say it: `bucket`. */
  readonly source: string;
}

export interface RemoteHit {
  readonly manifest: Manifest;
  readonly origin: RemoteOrigin;
}

export interface RemoteCache {
  /**
   * The newest successful job with this fingerprint in the team's records of this repository.
   * Undefined when there is none — and when the records cannot be reached: a team bucket that is
   * down costs the cache, never the run (the implementation says so once, as a notice).
   * `workflow` names the job in messages (the fingerprint covers the job's spec, not its name).
   */
  find(fingerprint: Fingerprint, workflow: string, signal?: AbortSignal): Promise<RemoteHit | undefined>;
  /**
   * Brings the hit's artifacts into the local artifact store, each object verified on the way, so
   * the job's dependents stage them exactly as a local hit's. Throws (a coded error) when an object
   * is missing or damaged in the bucket; the caller then runs the job instead.
   */
  fetch(hit: RemoteHit, signal?: AbortSignal): Promise<void>;
}

/** `cached by alice's run wet-lion-3 (bucket)`. */
export const describeRemoteOrigin = (o: RemoteOrigin): string => `cached by ${o.owner}'s run ${o.run} (${o.source})`;
