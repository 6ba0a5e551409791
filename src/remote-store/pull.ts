/**
 * `dstack pull`: a teammate's run (or tag) from the team bucket into the local store — its
 * artifacts (only the objects this home lacks, each verified on download: a damaged one is
 * quarantined in the bucket and fails the pull, never lands here), its records and its logs — so
 * `ps`, `ls`, `cp`, `logs` and the cache see it like a run made here.
 */
import { Codes, DstackError, type ErrorCode } from '../engine/errors.js';
import type { Manifest, ObjectStore } from '../engine/objects.js';
import type { ImportedLog, JobRecord, RunRecord, TagRecord } from '../engine/store/types.js';
import { asJobId, asRunName, isFinal, type JobId } from '../engine/types.js';
import type { TeamRun } from './records.js';
import { readRunLog } from './team-logs.js';
import type { TeamStore } from './team-store.js';
import { getTeamTag, type TeamTag } from './team-tags.js';
import { fetchObjects, filesOf, type TransferOptions, type TransferResult } from './transfer.js';

export interface PullContext extends TransferOptions {
  readonly team: TeamStore;
  /** Where the objects go: the local store. */
  readonly local: ObjectStore;
  readonly repo: string;
  /** The local project the run is recorded under (its `repo.root`). */
  readonly root: string;
}

export const unknownTeamRun = (name: string, team: TeamStore): DstackError =>
  new DstackError('DS0269', `no run named '${name}' in the team bucket ${team.where} for this repository`, { hint: 'list the team\'s runs with `dstack ps --remote`' });

/** The run's record in the bucket, finished (DS0269 / DS0104 otherwise). */
export async function finishedTeamRun(team: TeamStore, repo: string, name: string, signal?: AbortSignal): Promise<TeamRun> {
  const run = await team.getRun(repo, name, signal);
  if (!run) throw unknownTeamRun(name, team);
  if (!isFinal(run.status)) {
    throw new DstackError('DS0104', `run ${name} is still ${run.status} in the team bucket`, { hint: 'wait for it to finish, then pull it' });
  }
  return run;
}

/** Every job's manifest, by job index (verified against its hash). */
export async function manifestsOf(team: TeamStore, run: TeamRun): Promise<Map<number, Manifest>> {
  const out = new Map<number, Manifest>();
  await Promise.all(run.jobs.map(async (j) => j.manifest && out.set(j.index, await team.getManifest(j.manifest))));
  return out;
}

export interface PulledRun {
  readonly run: RunRecord;
  readonly jobs: readonly JobRecord[];
  readonly logs: readonly ImportedLog[];
  readonly objects: TransferResult;
}

export async function pullRun(ctx: PullContext, name: string, localName = name): Promise<PulledRun> {
  const team = await finishedTeamRun(ctx.team, ctx.repo, name, ctx.signal);
  const manifests = await manifestsOf(ctx.team, team);
  const objects = await fetchObjects(ctx.team.objects, ctx.local, filesOf(manifests.values()), ctx);
  const { run, jobs } = localRunOf(team, manifests, ctx.root, localName);
  const idOf = new Map(jobs.map((j) => [j.index, j.id] as const));
  const logs: ImportedLog[] = [];
  for await (const r of readRunLog(ctx.team, team, ctx.signal)) logs.push({ job: idOf.get(r.job)!, stream: r.stream, at: r.at, data: r.data });
  return { run, jobs, logs, objects };
}

/** A run of the bucket as this home records it, under `name`, in the project at `root`. */
export function localRunOf(t: TeamRun, manifests: ReadonlyMap<number, Manifest>, root: string, name = t.name): { run: RunRecord; jobs: JobRecord[] } {
  const runName = asRunName(name);
  const idOf = (i: number): JobId => asJobId(`${name}/${t.jobs[i]!.workflow}`);
  const run: RunRecord = {
    name: runName,
    workflow: t.workflow,
    owner: t.owner,
    backend: t.backend,
    repo: { root, isGit: t.repo.isGit, ...(t.repo.branch ? { branch: t.repo.branch } : {}), ...(t.repo.commit ? { commit: t.repo.commit } : {}), ...(t.repo.diffHash ? { diffHash: t.repo.diffHash } : {}) },
    args: t.args,
    ...(t.tag ? { tag: t.tag } : {}),
    status: t.status,
    submittedAt: t.submittedAt,
    ...(t.finishedAt !== undefined ? { finishedAt: t.finishedAt } : {}),
  };
  const jobs = t.jobs.map((j): JobRecord => {
    const manifest = manifests.get(j.index);
    return {
      id: idOf(j.index),
      run: runName,
      workflow: j.workflow,
      index: j.index,
      spec: j.spec,
      deps: j.deps.map(idOf),
      status: j.status,
      ...(j.exitCode !== undefined ? { exitCode: j.exitCode } : {}),
      ...(j.reason !== undefined ? { reason: j.reason } : {}),
      // A code this dstack does not know (a newer teammate's) is left out, as the local store does.
      ...(typeof j.errorCode === 'string' && Object.hasOwn(Codes, j.errorCode) ? { errorCode: j.errorCode as ErrorCode } : {}),
      ...(j.cachedFrom ? { cachedFrom: asJobId(j.cachedFrom) } : {}),
      ...(manifest ? { manifest } : {}),
      ...(j.fingerprint ? { fingerprint: j.fingerprint } : {}),
      ...(j.fingerprintParts ? { fingerprintParts: j.fingerprintParts } : {}),
      submittedAt: j.submittedAt,
      ...(j.startedAt !== undefined ? { startedAt: j.startedAt } : {}),
      ...(j.finishedAt !== undefined ? { finishedAt: j.finishedAt } : {}),
      history: j.history,
    };
  });
  return { run, jobs };
}

export interface PulledTag {
  readonly tag: TagRecord;
  readonly team: TeamTag;
  readonly objects: TransferResult;
}

export async function pullTag(ctx: PullContext, name: string): Promise<PulledTag> {
  const team = await getTeamTag(ctx.team, ctx.repo, name, ctx.signal);
  if (!team) {
    throw new DstackError('DS0015', `no tag named '${name}' in the team bucket ${ctx.team.where} for this repository`, { hint: 'list the tags there are with `dstack tags list`' });
  }
  const manifest = await ctx.team.getManifest(team.manifest);
  const objects = await fetchObjects(ctx.team.objects, ctx.local, filesOf([manifest]), ctx);
  return { tag: { name: team.name, ...(team.run ? { run: asRunName(team.run) } : {}), manifest, createdAt: team.createdAt }, team, objects };
}
