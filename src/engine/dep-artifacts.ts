/**
 * The artifact sets a job stages and fingerprints, from its deps: the outputs of the workflows it
 * depends on, the tags it pins, and deps on other repositories (resolved through the team bucket
 * before the run, pinned like tags under `externalKey`).
 */
import { DstackError } from './errors.js';
import type { Manifest } from './objects.js';
import { isExternalDep, pinnedName } from './plan.js';
import type { JobRecord, TagReader, TagRecord } from './store/types.js';
import type { Fingerprint, JobStatus } from './types.js';

export interface DepArtifacts {
  readonly kind: 'workflow' | 'tag';
  readonly name: string;
  readonly manifest: Manifest;
  readonly fingerprint?: Fingerprint;
}

/** A dep's result as the executor has it. */
export interface DepOutcome {
  readonly workflow: string;
  readonly status: JobStatus;
  readonly manifest?: Manifest;
  readonly fingerprint?: Fingerprint;
}

/** The deps' artifact sets in the order the spec lists them (later ones win on a path): workflows' outputs and tags'. */
export function depsInOrder(
  job: JobRecord,
  deps: readonly DepOutcome[],
  pinned: { readonly tags: TagReader; readonly external?: ReadonlyMap<string, TagRecord> },
): DepArtifacts[] {
  const byWorkflow = new Map(deps.map((d) => [d.workflow, d] as const));
  const out: DepArtifacts[] = [];
  const seen = new Set<string>();
  for (const dep of job.spec.deps) {
    const key = `${dep.kind}:${dep.name}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (dep.kind === 'tag' || isExternalDep(dep)) {
      const name = pinnedName(dep);
      const tag = pinned.external?.get(name) ?? pinned.tags.getTag(name);
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
