/**
 * Deps on another repository, as in dstack 0.7 — `workflow: acme/data/prep` (the artifacts of that
 * repository's newest successful run of `prep`) and `tag: acme/data/mnist-v1` — resolved through
 * the team bucket, where the other repository's runs and tags are kept. `acme/data` names any
 * repository whose identity ends with it (`github.com/acme/data`); a full identity names one.
 */
import { DstackError } from '../engine/errors.js';
import { externalKey } from '../engine/plan.js';
import type { TagRecord } from '../engine/store/types.js';
import { asRunName, type DepSpec } from '../engine/types.js';
import { lineTextAt } from '../engine/workflow/source.js';
import { identityMatches } from './repo-id.js';
import type { TeamStore } from './team-store.js';
import { getTeamTag } from './team-tags.js';

/** Run records read, newest first, looking for a job of the workflow inside runs named for another. */
const MAX_RECORDS = 50;

export interface ResolvedExternal extends TagRecord {
  /** The repository it came from, and who made the run or tag. */
  readonly repo: string;
  readonly owner: string;
}

/** Resolves every external dep (by `externalKey`); a dep that cannot be resolved is DS0272/DS0273 at its line. */
export async function resolveExternalDeps(team: TeamStore, deps: readonly DepSpec[], root: string): Promise<Map<string, ResolvedExternal>> {
  const out = new Map<string, ResolvedExternal>();
  let repos: Promise<string[]> | undefined;
  for (const dep of deps) {
    const key = externalKey(dep);
    if (out.has(key)) continue;
    const cut = dep.name.lastIndexOf('/');
    const repoRef = dep.name.slice(0, cut);
    const name = dep.name.slice(cut + 1);
    const fail = (code: 'DS0272' | 'DS0273', message: string, hint: string): DstackError =>
      new DstackError(code, message, {
        ...(dep.location.file !== '<command line>' ? { location: dep.location, lineText: lineTextAt(root, dep.location) } : {}),
        hint,
      });
    const matching = (await (repos ??= team.repos())).filter((id) => identityMatches(id, repoRef));
    if (matching.length === 0) {
      throw fail('DS0272', `no repository ${repoRef} in the team bucket ${team.where} (for the dep \`${dep.name}\`)`, `its runs must be pushed first (\`dstack push RUN\` in a clone of ${repoRef})`);
    }
    if (matching.length > 1) {
      throw fail('DS0273', `\`${repoRef}\` names several repositories in the team bucket: ${matching.join(', ')}`, `write the dep with the full name, e.g. \`${matching[0]}/${name}\``);
    }
    const repo = matching[0]!;
    const found = dep.kind === 'tag' ? await tagOf(team, repo, name) : await newestRunOf(team, repo, name);
    if (!found) {
      throw fail(
        'DS0272',
        dep.kind === 'tag' ? `no tag ${name} in ${repo} in the team bucket` : `no successful run of ${name} in ${repo} in the team bucket`,
        dep.kind === 'tag' ? `its owner pushes it with \`dstack push :${name}\`` : `run ${name} there and push it (\`dstack push RUN\`)`,
      );
    }
    out.set(key, { ...found, name: key, repo });
  }
  return out;
}

async function tagOf(team: TeamStore, repo: string, name: string): Promise<Omit<ResolvedExternal, 'name' | 'repo'> | undefined> {
  const t = await getTeamTag(team, repo, name);
  if (!t) return undefined;
  return { manifest: await team.getManifest(t.manifest), createdAt: t.createdAt, owner: t.owner, ...(t.run ? { run: asRunName(t.run) } : {}) };
}

/** The newest `done` run's job of `workflow`: runs named for it first, then others, newest first. */
async function newestRunOf(team: TeamStore, repo: string, workflow: string): Promise<Omit<ResolvedExternal, 'name' | 'repo'> | undefined> {
  const done = (await team.listRuns(repo)).filter((r) => r.status === 'done');
  const ordered = [...done.filter((r) => r.workflow === workflow), ...done.filter((r) => r.workflow !== workflow)].slice(0, MAX_RECORDS);
  for (const summary of ordered) {
    const run = await team.getRun(repo, summary.name);
    const job = run?.jobs.find((j) => j.workflow === workflow && j.status === 'done' && j.manifest);
    if (run && job) return { manifest: await team.getManifest(job.manifest!), createdAt: job.finishedAt ?? run.updatedAt, owner: run.owner, run: asRunName(run.name) };
  }
  return undefined;
}
