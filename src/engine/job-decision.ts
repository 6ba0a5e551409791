/**
 * A job's decision before any machine: its deps' artifact sets, the image digest (which may pull),
 * the cache decision (cache-decision.ts) applied — a reuse ends the job `done` with the hit's
 * artifacts, a hit in the team's records once they are fetched — and, for a job that runs, its
 * claim on its fingerprint (single-flight.ts), so concurrent runs needing the same dep make it once.
 */
import { decideCache } from './cache-decision.js';
import { DstackError, isDstackError } from './errors.js';
import type { ExecuteOptions, JobOutcome, StoredSnapshot } from './executor.js';
import { inputsHasher } from './fingerprint.js';
import type { JobContext } from './backend.js';
import type { Manifest } from './objects.js';
import { isExternalDep, pinnedName } from './plan.js';
import type { RemoteHit } from './remote-cache.js';
import { singleFlight } from './single-flight.js';
import type { CacheHit, JobRecord } from './store/types.js';
import type { Fingerprint, JobSpec } from './types.js';

/**
 * The deps' artifact sets in the order the spec lists them (later ones win on a path): workflows'
 * outputs, tags', and those of deps on other repositories (resolved through the team bucket before
 * the run, pinned like tags under `externalKey`).
 */
export function depsInOrder(o: ExecuteOptions, job: JobRecord, deps: readonly JobOutcome[]): { readonly kind: 'workflow' | 'tag'; readonly name: string; readonly manifest: Manifest; readonly fingerprint?: Fingerprint }[] {
  const byWorkflow = new Map(deps.map((d) => [d.workflow, d] as const));
  const out: { kind: 'workflow' | 'tag'; name: string; manifest: Manifest; fingerprint?: Fingerprint }[] = [];
  const seen = new Set<string>();
  for (const dep of job.spec.deps) {
    const key = `${dep.kind}:${dep.name}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (dep.kind === 'tag' || isExternalDep(dep)) {
      const name = pinnedName(dep);
      const tag = o.external?.get(name) ?? o.store.tags.getTag(name);
      if (!tag) throw new DstackError('DS0015', `tag '${dep.name}' that ${job.workflow} depends on no longer exists`, { hint: 'see `dstack tags list`' });
      out.push({ kind: 'tag', name, manifest: tag.manifest });
    } else {
      const d = byWorkflow.get(dep.name);
      if (d?.manifest) out.push({ kind: 'workflow', name: dep.name, manifest: d.manifest, ...(d.fingerprint ? { fingerprint: d.fingerprint } : {}) });
    }
  }
  // Deps the record lists but the spec does not (a hand-made record): after the others.
  for (const d of deps) {
    if (seen.has(`workflow:${d.workflow}`) || !d.manifest) continue;
    out.push({ kind: 'workflow', name: d.workflow, manifest: d.manifest, ...(d.fingerprint ? { fingerprint: d.fingerprint } : {}) });
  }
  return out;
}

export interface Decided {
  readonly imageDigest: string;
  readonly fingerprint?: Fingerprint;
  /** The job ended without running: reused. */
  readonly ended?: JobOutcome;
  /** The run was stopped while the job waited for another process: it ends so, never started. */
  readonly stopped?: 'stopped' | 'aborted';
  /** This job produces its fingerprint for every process that needs it: release once it has ended. */
  readonly release?: () => void;
}

/**
 * Decides the job (see cache-decision.ts), asking the backend for the image's digest (which may
 * pull it; the machine is then told that digest), and applies the decision: the fingerprint is
 * recorded, and a reuse ends the job `done` with the hit's artifacts, recording the job that made
 * them — a hit in the team's records once its artifacts are fetched into the local store (one that
 * cannot be fetched is no hit). A job that runs claims its fingerprint (single-flight.ts); one that
 * could be reused waits for another process already producing it, and reuses what that makes.
 */
export async function decide(o: ExecuteOptions, job: JobRecord, depManifests: ReturnType<typeof depsInOrder>): Promise<Decided> {
  const notify = (notice: Parameters<JobContext['notify']>[0]): void => o.onEvent({ type: 'job-notice', job: job.id, workflow: job.workflow, notice });
  const imageDigest = await o.backend.imageDigest(job.spec, { notify, signal: o.control.abortSignal, secrets: o.secrets }).catch((e: unknown) => {
    throw defaultImageMissing(e, job.spec);
  });
  const decision = await decideCache(
    o.store.cache,
    {
      spec: job.spec,
      imageDigest: () => Promise.resolve(imageDigest),
      inputs: { hash: inputsOf(o.snapshot)(job.spec.inputs), listing: o.snapshot.hash },
      // A dep without a fingerprint (a record from before fingerprints) makes this job's unknowable.
      deps: depManifests.filter((d) => d.kind === 'workflow').map((d) => ({ workflow: d.name, fingerprint: d.fingerprint, manifest: d.manifest })),
      tags: depManifests.filter((d) => d.kind === 'tag').map((d) => ({ name: d.name, manifest: d.manifest })),
      named: job.workflow === o.run.workflow,
      rerun: o.cache?.rerun,
      reuse: o.cache?.reuse,
      self: job.id,
      signal: o.control.abortSignal,
    },
    o.remoteCache,
  );
  if (decision.fingerprint) o.store.cache.setJobFingerprint(job.id, decision.fingerprint, decision.parts);
  if (decision.action === 'reuse' && (await fetched(o, job, decision.remote))) return reuse(o, job, decision.hit, decision.fingerprint, imageDigest, decision.remote);
  const { fingerprint } = decision;
  if (!fingerprint || !o.store.claims) return fingerprint ? { imageDigest, fingerprint } : { imageDigest };
  const waiting = new AbortController();
  const unsubscribe = o.control.onChange((mode) => mode !== 'running' && waiting.abort());
  if (o.control.mode !== 'running') waiting.abort();
  try {
    const flight = await singleFlight({
      claims: o.store.claims,
      cache: o.store.cache,
      runs: o.store.runs,
      fingerprint,
      job: job.id,
      run: o.run.name,
      // A team hit that could not be fetched may still be made by another process here.
      wait: decision.action === 'reuse' || decision.why === 'no-hit',
      signal: waiting.signal,
      onWaiting: (producer) => o.onEvent({ type: 'job-waiting', job: job.id, workflow: job.workflow, producer: producer.job, producerRun: producer.run }),
    });
    if (flight.kind === 'produce') return { imageDigest, fingerprint, release: flight.release };
    if (flight.kind === 'reuse') return reuse(o, job, flight.hit, fingerprint, imageDigest);
    if (flight.kind === 'alongside') return { imageDigest, fingerprint };
    const status = o.control.mode === 'aborting' ? 'aborted' : 'stopped';
    return { imageDigest, fingerprint, stopped: status };
  } finally {
    unsubscribe();
  }
}

/** Ends the job `done` with the hit's artifacts, recording the job that made them (`remote`: the team's). */
function reuse(o: ExecuteOptions, job: JobRecord, hit: CacheHit, fingerprint: Fingerprint, imageDigest: string, remote?: RemoteHit): Decided {
  if (o.store.runs.recordReuse(job.id, hit)) {
    o.onEvent({ type: 'job-reused', job: job.id, workflow: job.workflow, from: hit.origin.job, ...(remote && { origin: remote.origin }) });
    o.onEvent({ type: 'job-status', job: job.id, workflow: job.workflow, status: 'done', exitCode: 0 });
  }
  return { imageDigest, fingerprint, ended: { job: job.id, workflow: job.workflow, status: 'done', manifest: hit.manifest, fingerprint } };
}

/**
 * A hit in the team's records has its artifacts brought into the local store first. One that cannot
 * be fetched (an object missing or damaged in the bucket) is not a hit: the job runs, and says why.
 */
async function fetched(o: ExecuteOptions, job: JobRecord, remote: RemoteHit | undefined): Promise<boolean> {
  if (!remote || !o.remoteCache) return true;
  try {
    await o.remoteCache.fetch(remote, o.control.abortSignal);
    return true;
  } catch (e) {
    if (!isDstackError(e)) throw e;
    const message = `not reusing ${remote.origin.job} (${remote.origin.source}): ${e.code}: ${e.message}`;
    o.onEvent({ type: 'job-notice', job: job.id, workflow: job.workflow, notice: { kind: 'info', message } });
    return false;
  }
}

/** One inputs hasher per snapshot (so per run): see `inputsHasher`. */
const hashers = new WeakMap<StoredSnapshot, ReturnType<typeof inputsHasher>>();
function inputsOf(snapshot: StoredSnapshot): ReturnType<typeof inputsHasher> {
  let h = hashers.get(snapshot);
  if (!h) hashers.set(snapshot, (h = inputsHasher(snapshot.manifest.entries)));
  return h;
}


/**
 * The default image of provider bash (default-image.ts) that cannot be had — offline, most often — is
 * the workflow's to fix by naming an image it has: say so, instead of the engine's pull error alone.
 */
function defaultImageMissing(e: unknown, spec: JobSpec): unknown {
  if (!spec.defaultImage || !(e instanceof DstackError) || e.code !== 'DS0201') return e;
  return new DstackError('DS0043', `workflow \`${spec.workflow}\` names no image, and its default, ${spec.image}, is not available: ${e.message}`, {
    hint: `set \`image:\` in the workflow to an image you have (\`docker images\`), or pull the default: \`docker pull ${spec.image}\``,
    cause: e,
  });
}
