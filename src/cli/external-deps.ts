/**
 * Deps on other repositories (`workflow: acme/data/prep`, `tag: acme/data/v1`) for a run: resolved
 * through the team bucket when the run is planned (so a missing one is an error at its line before
 * anything runs) and again when it executes, with their artifacts fetched into the local store then.
 */
import { DstackError } from '../engine/errors.js';
import { isExternalDep } from '../engine/plan.js';
import { lineTextAt } from '../engine/workflow/source.js';
import type { TagRecord } from '../engine/store/types.js';
import type { DepSpec } from '../engine/types.js';
import type { Session } from './session.js';
import { teamRemote, withTeam } from './team.js';

/** The resolved external deps among `deps` (by `externalKey`); undefined when there are none. */
export async function externalDepsOf(session: Session, root: string, deps: readonly DepSpec[], options: { readonly fetch: boolean }): Promise<ReadonlyMap<string, TagRecord> | undefined> {
  const external = deps.filter(isExternalDep);
  if (external.length === 0) return undefined;
  const remote = await teamRemote(session.home).catch((e: unknown) => {
    if (!(e instanceof DstackError) || e.code !== 'DS0267') throw e;
    const dep = external[0]!;
    throw new DstackError('DS0267', `${e.message}: the dep \`${dep.name}\` on another repository is resolved through one`, {
      ...(dep.location.file !== '<command line>' ? { location: dep.location, lineText: lineTextAt(root, dep.location) } : {}),
      ...(e.hint ? { hint: e.hint } : {}),
    });
  });
  return withTeam(remote, async (team) => {
    const { resolveExternalDeps } = await import('../remote-store/external-deps.js');
    const resolved = await resolveExternalDeps(team, external, root);
    if (options.fetch) {
      const { fetchObjects, filesOf } = await import('../remote-store/transfer.js');
      await fetchObjects(team.objects, (await session.artifacts()).objects, filesOf([...resolved.values()].map((r) => r.manifest)));
    }
    return resolved;
  });
}
