/**
 * `RUN|:TAG` on the command line (`ls`, `cp`, `tags add`): the artifacts of a run (every job's
 * manifest merged, later jobs winning on the same path) or of a tag.
 */
import { makeManifest } from '../artifacts/manifest.js';
import type { Manifest, ManifestEntry } from '../artifacts/types.js';
import { DstackError } from '../engine/errors.js';
import type { JobRecord, RunReader, RunRecord, TagReader, TagRecord } from '../engine/store/types.js';
import { requireRun } from './runs.js';

export type ArtifactSource =
  | { readonly kind: 'run'; readonly run: RunRecord; readonly manifest: Manifest; readonly jobOf: ReadonlyMap<string, JobRecord> }
  | { readonly kind: 'tag'; readonly tag: TagRecord; readonly manifest: Manifest };

/** `:NAME` is a tag, anything else a run. Unknown: DS0015 or DS0101. */
export function resolveArtifactSource(store: { readonly runs: RunReader; readonly tags: TagReader }, ref: string): ArtifactSource {
  if (ref.startsWith(':')) {
    const name = ref.slice(1);
    const tag = store.tags.getTag(name);
    if (!tag) throw unknownTag(name);
    return { kind: 'tag', tag, manifest: tag.manifest };
  }
  const run = requireRun(store, ref, 'list runs with `dstack ps -a`, or name a tag as `:TAG`');
  const { manifest, jobOf } = mergeJobManifests(store.runs.jobs(run.name));
  return { kind: 'run', run, manifest, jobOf };
}

export const unknownTag = (name: string): DstackError =>
  new DstackError('DS0015', `no tag named '${name}'`, { hint: 'list tags with `dstack tags list`' });

/**
 * One manifest for a run: jobs in order, a later job's entry replacing an earlier one at the same
 * path. A later file or symlink also hides what an earlier job had under it (`out` the file replaces
 * `out/…`), and a later entry under `out/` hides an earlier file `out`, so the result is a tree
 * `materialize` can write as is.
 */
export function mergeJobManifests(jobs: readonly JobRecord[]): { readonly manifest: Manifest; readonly jobOf: ReadonlyMap<string, JobRecord> } {
  const entries = new Map<string, ManifestEntry>();
  const jobOf = new Map<string, JobRecord>();
  // Folders something was recorded under, so the sweep below only runs when it can find anything.
  const parents = new Set<string>();
  const drop = (p: string): void => {
    entries.delete(p);
    jobOf.delete(p);
  };
  for (const job of [...jobs].sort((a, b) => a.index - b.index)) {
    for (const e of job.manifest?.entries ?? []) {
      if (e.type !== 'dir' && parents.has(e.path)) {
        for (const p of [...entries.keys()]) if (p.startsWith(`${e.path}/`)) drop(p);
        parents.delete(e.path);
      }
      // Ancestors that an earlier job had as files or symlinks give way to the folder.
      for (let i = e.path.indexOf('/'); i > 0; i = e.path.indexOf('/', i + 1)) {
        const dir = e.path.slice(0, i);
        const above = entries.get(dir);
        if (above && above.type !== 'dir') drop(dir);
        parents.add(dir);
      }
      entries.set(e.path, e);
      jobOf.set(e.path, job);
    }
  }
  return { manifest: makeManifest(entries.values()), jobOf };
}
