/**
 * `ls`, `cp` and `logs` on a run (or tag) this home does not have but the team bucket does: the
 * run's records and manifests are read from the bucket (a few small requests), and `cp` then
 * fetches only the objects it copies — verified, into the local store. Nothing is fetched for `ls`.
 */
import { DstackError } from '../engine/errors.js';
import type { RunReader, TagReader } from '../engine/store/types.js';
import { findProjectRoot } from '../engine/workflow/files.js';
import type { TeamRun } from '../remote-store/records.js';
import type { TeamStore } from '../remote-store/team-store.js';
import { mergeJobManifests, resolveArtifactSource, type ArtifactSource } from './artifact-ref.js';
import { defaultTeamRemote, openTeam, repoOf } from './team.js';

export interface TeamSource {
  readonly team: TeamStore;
  readonly repo: string;
  /** The run's record in the bucket (absent for a tag). */
  readonly run?: TeamRun;
}

export type SourceWithTeam = ArtifactSource & { readonly from?: TeamSource };

/** A team run or tag, opened; undefined when there is no team bucket, no project, or no such name there. */
async function findInTeam(home: string, ref: string): Promise<(ArtifactSource & { readonly from: TeamSource }) | undefined> {
  const remote = await defaultTeamRemote(home).catch(() => undefined);
  const root = findProjectRoot(process.cwd());
  if (!remote || !root) return undefined;
  const team = await openTeam(remote);
  try {
    const repo = await repoOf(root);
    const { finishedTeamRun, localRunOf, manifestsOf } = await import('../remote-store/pull.js');
    if (ref.startsWith(':')) {
      const { getTeamTag } = await import('../remote-store/team-tags.js');
      const t = await getTeamTag(team, repo, ref.slice(1));
      if (!t) return close(team);
      const manifest = await team.getManifest(t.manifest);
      return { kind: 'tag', tag: { name: t.name, manifest, createdAt: t.createdAt }, manifest, from: { team, repo } };
    }
    const run = await team.getRun(repo, ref);
    if (!run) return close(team);
    await finishedTeamRun(team, repo, ref);
    const local = localRunOf(run, await manifestsOf(team, run), root);
    const { manifest, jobOf } = mergeJobManifests(local.jobs);
    return { kind: 'run', run: local.run, manifest, jobOf, from: { team, repo, run } };
  } catch (e) {
    await team.bucket.close();
    throw e;
  }
}

async function close(team: TeamStore): Promise<undefined> {
  await team.bucket.close();
  return undefined;
}

/**
 * `RUN|:TAG` of this home, else of the team bucket (then `from` is set, and the caller closes
 * `from.team.bucket`). Unknown in both: the local error (DS0101 / DS0015).
 */
export async function resolveWithTeam(store: { readonly runs: RunReader; readonly tags: TagReader }, home: string, ref: string): Promise<SourceWithTeam> {
  try {
    return resolveArtifactSource(store, ref);
  } catch (e) {
    if (!(e instanceof DstackError) || (e.code !== 'DS0101' && e.code !== 'DS0015')) throw e;
    const found = await findInTeam(home, ref);
    if (!found) throw e;
    return found;
  }
}
