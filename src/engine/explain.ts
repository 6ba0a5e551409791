/**
 * `dstack run WF --dry-run --explain`: for each job of the plan, whether it would be reused and why
 * it would run — which input changed since the last fingerprinted job of that workflow in this
 * repository. Decided the way the executor decides (same fingerprints), without running, pulling or
 * storing anything. A job whose dep must run cannot be decided before that dep's artifacts exist.
 */
import type { Manifest, ManifestEntry } from './objects.js';
import type { Backend } from './backend.js';
import { isDstackError } from './errors.js';
import { CACHED_PREFIX, fingerprintOf, fingerprintParts, inputsHasher, selectInputs } from './fingerprint.js';
import type { CacheHit, JobRecord, RunStore } from './store/types.js';
import type { PreparedRun } from './submit.js';
import type { ContentHash, Fingerprint, FingerprintParts, JobId } from './types.js';

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
);

export interface JobDecision {
  readonly workflow: string;
  readonly decision: 'cached' | 'runs';
  /** The job that would be reused. */
  readonly from?: JobId;
  readonly causes: readonly Cause[];
  readonly fingerprint?: Fingerprint;
}

export interface ExplainOptions {
  readonly store: RunStore;
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
    const decide = (d: Omit<JobDecision, 'workflow'>): void => void decisions.push({ workflow: job.workflow, ...d });
    if (o.rerun) {
      decide({ decision: 'runs', causes: [{ kind: 'rerun', text: '--rerun' }] });
      continue;
    }
    const running = job.deps.map((i) => decisions[i]!).filter((d) => d.decision === 'runs' || !d.fingerprint);
    if (running.length) {
      const workflows = running.map((d) => d.workflow);
      decide({ decision: 'runs', causes: [{ kind: 'after', workflows, text: `runs after ${workflows.join(', ')} (its inputs change)` }] });
      continue;
    }
    let imageDigest: string;
    try {
      imageDigest = await o.backend.imageDigest(job.spec, { notify: () => undefined, signal: o.signal, pull: false });
    } catch (e) {
      if (!isDstackError(e)) throw e;
      const image = job.spec.image;
      decide({
        decision: 'runs',
        causes: [
          e.code === 'DS0201'
            ? { kind: 'image-absent', image, text: `image ${image} not present locally; it will be pulled` }
            : { kind: 'image-unknown', image, text: `image ${image} could not be inspected (${e.code}: ${e.message})` },
        ],
      });
      continue;
    }
    const deps = job.deps.map((i) => {
      const d = decisions[i]!;
      return { workflow: d.workflow, fingerprint: d.fingerprint!, manifest: reused[i]! };
    });
    const tags = job.spec.deps.filter((d) => d.kind === 'tag').map((d) => ({ name: d.name, manifest: o.prepared.tags.get(d.name)!.manifest }));
    const parts = fingerprintParts({ spec: job.spec, imageDigest, inputs: { hash: inputs(job.spec.inputs) }, deps, tags });
    const fingerprint = fingerprintOf(parts);

    const named = job.workflow === o.target;
    const hit = named && !o.reuse ? undefined : o.store.findCacheHit(fingerprint);
    if (hit) {
      // The executor names the job that really ran; so does the plan.
      reused[decisions.length] = hit.manifest;
      decide({ decision: 'cached', from: originOf(hit), fingerprint, causes: [] });
      continue;
    }
    const last = o.store.lastFingerprintedJob(job.workflow, o.repoRoot);
    let causes: Cause[];
    if (!last?.fingerprintParts) causes = [{ kind: 'first-run', text: 'first run' }];
    else if (last.fingerprint === fingerprint) {
      causes = named
        ? [{ kind: 'named', text: 'named workflow (runs unless --reuse)' }]
        : [{ kind: 'not-done', job: last.id, status: last.status, text: `no successful run with these inputs (${last.id} ended ${last.status})` }];
    } else {
      causes = await diffParts(last, { parts, inputs: job.spec.inputs, snapshot: o.snapshot }, o.readListing);
      if (named && o.reuse && causes.length === 0) causes = [{ kind: 'named', text: 'named workflow' }];
    }
    decide({ decision: 'runs', fingerprint, causes });
  }
  return decisions;
}

const originOf = (hit: CacheHit): JobId => (hit.reason?.startsWith(CACHED_PREFIX) ? (hit.reason.slice(CACHED_PREFIX.length) as JobId) : hit.id);

/** What changed between the last fingerprinted job and now, in the order a person looks for it. */
export async function diffParts(
  last: JobRecord,
  now: { readonly parts: FingerprintParts; readonly inputs: readonly string[] | undefined; readonly snapshot: Manifest },
  readListing: (hash: ContentHash) => Promise<Manifest | undefined>,
): Promise<Cause[]> {
  const before = last.fingerprintParts!;
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
  last: JobRecord,
  now: { readonly inputs: readonly string[] | undefined; readonly snapshot: Manifest },
  readListing: (hash: ContentHash) => Promise<Manifest | undefined>,
): Promise<Cause[]> {
  const listing = last.fingerprintParts?.inputsListing;
  const old = listing ? await readListing(listing).catch(() => undefined) : undefined;
  if (!old) return [{ kind: 'spec', part: 'inputs', text: 'inputs changed' }];
  const before = new Map(selectInputs(old.entries, last.spec.inputs).map((e) => [e.path, identity(e)] as const));
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
