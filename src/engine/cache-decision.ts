/**
 * Whether a job runs or reuses an earlier job's artifacts, decided in one place. The executor
 * applies the decision (records the fingerprint, and a reuse); `--dry-run --explain` shows it, and
 * for a job that runs says which input changed. Both call `decideCache` with the same inputs, so
 * the plan cannot promise a reuse that the run then does not make, nor the other way round.
 * When the local index misses, a second index may be asked: the team's records in a bucket
 * (remote-cache.ts), so a job a teammate (or a remote run) already made is reused too.
 */
import type { Manifest } from './objects.js';
import { fingerprintOf, fingerprintParts } from './fingerprint.js';
import type { RemoteCache, RemoteHit } from './remote-cache.js';
import type { CacheHit, CacheIndex } from './store/types.js';
import { asRunName, type ContentHash, type Fingerprint, type FingerprintParts, type JobId, type JobSpec } from './types.js';

/** A dep's result as the decision sees it; `fingerprint` is unknown while the dep has still to run. */
export interface DepResult {
  readonly workflow: string;
  readonly fingerprint?: Fingerprint;
  readonly manifest?: Manifest;
}

export interface DecisionInput {
  readonly spec: JobSpec;
  /** The image's digest; asked only when the deps' results are known (it may pull the image). */
  readonly imageDigest: () => Promise<string>;
  /** Tree hash of the job's inputs, and the object holding the listing it came from (absent in a dry run). */
  readonly inputs: { readonly hash: ContentHash; readonly listing?: ContentHash };
  /** Workflow deps, in the order the spec lists them. */
  readonly deps: readonly DepResult[];
  readonly tags: readonly { readonly name: string; readonly manifest: Manifest }[];
  /** The workflow named on the command line: it runs unless `reuse`. */
  readonly named: boolean;
  readonly rerun?: boolean;
  readonly reuse?: boolean;
  /** The job being decided: never its own hit. */
  readonly self?: JobId;
  /** Cancels the look-up in the team's records. */
  readonly signal?: AbortSignal;
}

/** Why a job runs: `deps-unknown` — a dep has yet to run (or is a record from before fingerprints). */
export type RunWhy = 'deps-unknown' | 'rerun' | 'named' | 'no-hit';

export type CacheDecision =
  | { readonly action: 'run'; readonly why: 'deps-unknown'; readonly fingerprint?: undefined; readonly parts?: undefined }
  | { readonly action: 'run'; readonly why: Exclude<RunWhy, 'deps-unknown'>; readonly fingerprint: Fingerprint; readonly parts: FingerprintParts }
  | {
      readonly action: 'reuse';
      readonly fingerprint: Fingerprint;
      readonly parts: FingerprintParts;
      readonly hit: CacheHit;
      /** Set when the hit is in the team's records, not this home's: its artifacts are fetched before the reuse. */
      readonly remote?: RemoteHit;
    };

/**
 * Fingerprints the job once its deps' results are known, then applies the policy: `--rerun` reuses
 * nothing, the named workflow runs unless `--reuse`, anything else reuses the newest `done` job with
 * the same fingerprint when there is one — from this home's index, else from `remote`'s (the team's).
 */
export async function decideCache(cache: Pick<CacheIndex, 'findCacheHit'>, input: DecisionInput, remote?: Pick<RemoteCache, 'find'>): Promise<CacheDecision> {
  const deps: { workflow: string; fingerprint: Fingerprint; manifest: Manifest }[] = [];
  for (const d of input.deps) {
    if (d.fingerprint === undefined || d.manifest === undefined) return { action: 'run', why: 'deps-unknown' };
    deps.push({ workflow: d.workflow, fingerprint: d.fingerprint, manifest: d.manifest });
  }
  const parts = fingerprintParts({ spec: input.spec, imageDigest: await input.imageDigest(), inputs: input.inputs, deps, tags: input.tags });
  const fingerprint = fingerprintOf(parts);
  if (input.rerun) return { action: 'run', why: 'rerun', fingerprint, parts };
  if (input.named && !input.reuse) return { action: 'run', why: 'named', fingerprint, parts };
  const hit = cache.findCacheHit(fingerprint, input.self === undefined ? {} : { exclude: input.self });
  if (hit) return { action: 'reuse', fingerprint, parts, hit };
  // Without a team, no await: the decision takes no longer than the local look-up alone.
  const far = remote ? await remote.find(fingerprint, input.spec.workflow, input.signal) : undefined;
  if (!far) return { action: 'run', why: 'no-hit', fingerprint, parts };
  return { action: 'reuse', fingerprint, parts, hit: remoteCacheHit(far), remote: far };
}

/** A hit in the team's records as the local store records a reuse: the job that made it, by its name in the bucket. */
const remoteCacheHit = (far: RemoteHit): CacheHit => ({
  job: far.origin.job,
  manifest: far.manifest,
  origin: { job: far.origin.job, run: asRunName(far.origin.run) },
});
