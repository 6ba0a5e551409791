/**
 * `dstack run WF --dry-run --explain`: for each job of the plan, whether it would be reused and why
 * it would run — which input changed since the last fingerprinted job of that workflow in this
 * repository. Decided by the executor's own decision (cache-decision.ts), without running, pulling
 * or storing anything. A job whose dep must run cannot be decided before that dep's artifacts exist.
 */
import type { Manifest, ManifestEntry } from './objects.js';
import type { Backend } from './backend.js';
import { decideCache, type CacheDecision } from './cache-decision.js';
import { isDstackError, type DstackError } from './errors.js';
import { inputsHasher, selectInputs } from './fingerprint.js';
import { isExternalDep, pinnedName } from './plan.js';
import type { RemoteCache, RemoteOrigin } from './remote-cache.js';
import { liveProducer } from './single-flight.js';
import type { CacheIndex, FingerprintClaims, FingerprintedJob, RunReader } from './store/types.js';
import type { PreparedRun } from './submit.js';
import type { ContentHash, Fingerprint, FingerprintParts, JobId, RunName } from './types.js';

/** Why a job runs, as data; `text` is how the terminal says it. */
export type Cause = { readonly text: string } & (
  | { readonly kind: 'first-run' }
  | { readonly kind: 'rerun' }
  | { readonly kind: 'named' }
  | { readonly kind: 'after'; readonly workflows: readonly string[] }
  | { readonly kind: 'image-absent'; readonly image: string }
  | { readonly kind: 'image-unknown'; readonly image: string }
  | { readonly kind: 'image'; readonly image: string; readonly from: string; readonly to: string }
  | { readonly kind: 'file'; readonly path: string; readonly change: 'changed' | 'added' | 'removed' }
  | { readonly kind: 'more-files'; readonly count: number }
  | { readonly kind: 'variable'; readonly name: string; readonly from?: string; readonly to?: string }
  | { readonly kind: 'env'; readonly name: string; readonly change: 'changed' | 'added' | 'removed' }
  | { readonly kind: 'dep'; readonly workflow: string; readonly change: 'changed' | 'added' | 'removed' }
  | { readonly kind: 'tag'; readonly name: string; readonly change: 'changed' | 'added' | 'removed' }
  | { readonly kind: 'spec'; readonly part: 'command' | 'args' | 'working_dir' | 'resources' | 'artifacts' | 'inputs' | 'version' }
  | { readonly kind: 'not-done'; readonly job: JobId; readonly status: string }
  | { readonly kind: 'producing'; readonly job: JobId; readonly run: RunName }
);

export interface JobDecision {
  readonly workflow: string;
  /** `waits`: another process is making the same fingerprint now; the run would wait and reuse it. */
  readonly decision: 'cached' | 'runs' | 'waits';
  /** The job that would be reused: the one that made the artifacts, while its run exists. */
  readonly from?: JobId;
  readonly fromRun?: RunName;
  /** Set when the job would be reused from the team's records (a bucket), not this home's. */
  readonly via?: RemoteOrigin;
  readonly causes: readonly Cause[];
  readonly fingerprint?: Fingerprint;
}

export interface ExplainOptions {
  readonly store: {
    readonly cache: Pick<CacheIndex, 'findCacheHit' | 'lastFingerprintedJob'>;
    /** With these, a job another process is producing now is said to wait for it. */
    readonly claims?: Pick<FingerprintClaims, 'holder'>;
    readonly runs?: Pick<RunReader, 'getJob'>;
  };
  readonly backend: Backend;
  readonly prepared: PreparedRun;
  readonly repoRoot: string;
  /** The code snapshot as it is now, hashed (not stored). */
  readonly snapshot: Manifest;
  /** Reads a stored snapshot listing (an earlier run's); undefined when it is gone. */
  readonly readListing: (hash: ContentHash) => Promise<Manifest | undefined>;
  /** The named workflow: the last job of the plan. */
  readonly target: string;
  readonly rerun?: boolean;
  readonly reuse?: boolean;
  readonly signal: AbortSignal;
  /** The team's records, looked up after the local index misses; nothing is fetched in a plan. */
  readonly remoteCache?: RemoteCache;
}

/** Files named one by one before `and N more`. */
const MAX_FILES = 5;

export async function explainRun(o: ExplainOptions): Promise<readonly JobDecision[]> {
  const decisions: JobDecision[] = [];
  // The artifacts each cached job would reuse, by plan index: its dependents need them for their
  // own fingerprints. Kept from the hit rather than read back per dependent (a full job record
  // each: ~180 ms over the 2,000 edges of a 1,000-workflow plan).
  const reused: (Manifest | undefined)[] = [];
  const inputs = inputsHasher(o.snapshot.entries);
  for (const job of o.prepared.jobs) {
    const named = job.workflow === o.target;
    // An image that cannot be inspected is a cause to show; any other error (the store's) is not.
    let imageError: DstackError | undefined;
    const imageDigest = (): Promise<string> =>
      o.backend.imageDigest(job.spec, { notify: () => undefined, signal: o.signal, pull: false }).catch((e: unknown) => {
        if (isDstackError(e)) imageError = e;
        throw e;
      });
    let decision: CacheDecision;
    try {
      decision = await decideCache(o.store.cache, {
        spec: job.spec,
        imageDigest,
        inputs: { hash: inputs(job.spec.inputs) },
        deps: job.deps.map((i) => ({ workflow: decisions[i]!.workflow, fingerprint: decisions[i]!.fingerprint, manifest: reused[i] })),
        tags: job.spec.deps.filter((d) => d.kind === 'tag' || isExternalDep(d)).map((d) => ({ name: pinnedName(d), manifest: o.prepared.tags.get(pinnedName(d))!.manifest })),
        named,
        rerun: o.rerun,
        reuse: o.reuse,
        signal: o.signal,
      }, o.remoteCache);
    } catch (e) {
      if (!imageError) throw e;
      decisions.push({ workflow: job.workflow, decision: 'runs', causes: [imageCause(job.spec.image, imageError)] });
      continue;
    }
    if (decision.action === 'reuse') {
      reused[decisions.length] = decision.hit.manifest;
      decisions.push({
        workflow: job.workflow,
        decision: 'cached',
        from: decision.hit.origin.job,
        fromRun: decision.hit.origin.run,
        ...(decision.remote && { via: decision.remote.origin }),
        fingerprint: decision.fingerprint,
        causes: [],
      });
      continue;
    }
    const producer = decision.why === 'no-hit' && o.store.claims && o.store.runs ? liveProducer(o.store.claims, o.store.runs, decision.fingerprint) : undefined;
    if (producer) {
      const text = `being made now by run ${producer.run} (${producer.job}): this run waits for it and reuses its artifacts`;
      decisions.push({ workflow: job.workflow, decision: 'waits', fromRun: producer.run, from: producer.job, fingerprint: decision.fingerprint, causes: [{ kind: 'producing', job: producer.job, run: producer.run, text }] });
      continue;
    }
    const causes = await causesOf(o, decision, job.workflow, job.spec.inputs, job.deps.map((i) => decisions[i]!));
    decisions.push({ workflow: job.workflow, decision: 'runs', ...(decision.fingerprint && { fingerprint: decision.fingerprint }), causes });
  }
  return decisions;
}

function imageCause(image: string, e: { readonly code: string; readonly message: string }): Cause {
  return e.code === 'DS0201'
    ? { kind: 'image-absent', image, text: `image ${image} not present locally; it will be pulled` }
    : { kind: 'image-unknown', image, text: `image ${image} could not be inspected (${e.code}: ${e.message})` };
}

/** Why a job runs, from its decision and what changed since its workflow's last fingerprinted job. */
async function causesOf(
  o: ExplainOptions,
  decision: Exclude<CacheDecision, { readonly action: 'reuse' }>,
  workflow: string,
  jobInputs: readonly string[] | undefined,
  deps: readonly JobDecision[],
): Promise<Cause[]> {
  if (o.rerun) return [{ kind: 'rerun', text: '--rerun' }];
  if (decision.why === 'deps-unknown') {
    const workflows = deps.filter((d) => d.decision !== 'cached' || !d.fingerprint).map((d) => d.workflow);
    return [{ kind: 'after', workflows, text: `runs after ${workflows.join(', ')} (its inputs change)` }];
  }
  const named = decision.why === 'named';
  const last = o.store.cache.lastFingerprintedJob(workflow, o.repoRoot);
  if (!last) return [{ kind: 'first-run', text: 'first run' }];
  if (last.fingerprint === decision.fingerprint) {
    return named
      ? [{ kind: 'named', text: 'named workflow (runs unless --reuse)' }]
      : [{ kind: 'not-done', job: last.id, status: last.status, text: `no successful run with these inputs (${last.id} ended ${last.status})` }];
  }
  const causes = await diffParts(last, { parts: decision.parts, inputs: jobInputs, snapshot: o.snapshot }, o.readListing);
  if (causes.length === 0 && workflow === o.target && o.reuse) return [{ kind: 'named', text: 'named workflow' }];
  return causes;
}

/** What changed between the last fingerprinted job and now, in the order a person looks for it. */
export async function diffParts(
  last: FingerprintedJob,
  now: { readonly parts: FingerprintParts; readonly inputs: readonly string[] | undefined; readonly snapshot: Manifest },
  readListing: (hash: ContentHash) => Promise<Manifest | undefined>,
): Promise<Cause[]> {
  const before = last.parts;
  const after = now.parts;
  if (before.version !== after.version) return [{ kind: 'spec', part: 'version', text: 'dstack now fingerprints jobs differently (a new version)' }];
  const a = before.parts;
  const b = after.parts;
  const causes: Cause[] = [];
  const names = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const change = (k: string): 'changed' | 'added' | 'removed' | undefined =>
    a[k] === b[k] ? undefined : a[k] === undefined ? 'added' : b[k] === undefined ? 'removed' : 'changed';

  if (a.image !== b.image) {
    const image = after.values?.image ?? 'image';
    const was = before.values?.image;
    causes.push({
      kind: 'image',
      image,
      from: a.image ?? '',
      to: b.image ?? '',
      text: was !== undefined && was !== image ? `image ${was} → ${image}` : `image ${image} changed (${short(a.image)} → ${short(b.image)})`,
    });
  }
  for (const k of names.filter((n) => n.startsWith('env.'))) {
    const c = change(k);
    if (c) causes.push({ kind: 'env', name: k.slice(4), change: c, text: `env ${k.slice(4)} ${c}` });
  }
  for (const k of names.filter((n) => n.startsWith('var.'))) {
    const c = change(k);
    if (!c) continue;
    const name = k.slice(4);
    const from = before.values?.[k];
    const to = after.values?.[k];
    const text = c === 'changed' ? (from !== undefined && to !== undefined ? `variable ${name}: ${from} → ${to}` : `variable ${name} changed`) : `variable ${name} ${c}`;
    causes.push({ kind: 'variable', name, ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}), text });
  }
  if (change('args')) causes.push({ kind: 'spec', part: 'args', text: 'arguments changed' });
  // Variables and arguments are interpolated into the command, so it changes with them: then they
  // are the cause to name. (A command edited in the same breath goes unmentioned; the job runs anyway.)
  if (change('command') && !causes.some((c) => c.kind === 'variable' || (c.kind === 'spec' && c.part === 'args'))) {
    causes.push({ kind: 'spec', part: 'command', text: 'command changed' });
  }
  if (change('working_dir')) causes.push({ kind: 'spec', part: 'working_dir', text: 'working dir changed' });
  if (change('resources')) causes.push({ kind: 'spec', part: 'resources', text: 'GPU resources changed' });
  if (change('artifacts')) causes.push({ kind: 'spec', part: 'artifacts', text: 'artifact paths changed' });
  if (change('inputs')) causes.push(...(await fileCauses(last, now, readListing)));
  for (const k of names.filter((n) => n.startsWith('dep.'))) {
    const c = change(k);
    if (c) causes.push({ kind: 'dep', workflow: k.slice(4), change: c, text: `dep ${k.slice(4)} ${c}` });
  }
  for (const k of names.filter((n) => n.startsWith('tag.'))) {
    const c = change(k);
    if (c) causes.push({ kind: 'tag', name: k.slice(4), change: c, text: `tag ${k.slice(4)} ${c}` });
  }
  return causes;
}

async function fileCauses(
  last: FingerprintedJob,
  now: { readonly inputs: readonly string[] | undefined; readonly snapshot: Manifest },
  readListing: (hash: ContentHash) => Promise<Manifest | undefined>,
): Promise<Cause[]> {
  const listing = last.parts.inputsListing;
  const old = listing ? await readListing(listing).catch(() => undefined) : undefined;
  if (!old) return [{ kind: 'spec', part: 'inputs', text: 'inputs changed' }];
  const before = new Map(selectInputs(old.entries, last.inputs).map((e) => [e.path, identity(e)] as const));
  const after = new Map(selectInputs(now.snapshot.entries, now.inputs).map((e) => [e.path, identity(e)] as const));
  const files: Cause[] = [];
  for (const path of [...new Set([...before.keys(), ...after.keys()])].sort()) {
    const x = before.get(path);
    const y = after.get(path);
    if (x === y) continue;
    const c = x === undefined ? 'added' : y === undefined ? 'removed' : 'changed';
    files.push({ kind: 'file', path, change: c, text: `file ${path} ${c}` });
  }
  if (files.length === 0) return [{ kind: 'spec', part: 'inputs', text: 'inputs changed' }];
  if (files.length <= MAX_FILES) return files;
  const more = files.length - MAX_FILES;
  return [...files.slice(0, MAX_FILES), { kind: 'more-files', count: more, text: `and ${more} more` }];
}

const identity = (e: ManifestEntry): string => (e.type === 'file' ? `${e.mode}:${e.hash}` : e.type === 'symlink' ? `->${e.target}` : 'dir');

/** `sha256:0123456789ab…` */
const short = (digest: string | undefined): string => {
  if (!digest) return '?';
  const [algo, hex] = digest.includes(':') ? (digest.split(':', 2) as [string, string]) : ['', digest];
  return `${algo ? `${algo}:` : ''}${hex.slice(0, 12)}…`;
};
