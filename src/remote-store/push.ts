/**
 * `dstack push`: a finished run (or a tag) of this home into the team bucket. Objects first (only
 * the missing ones), then the manifests, the logs, the run record, its cache entries, and last its
 * index entry — so a teammate never sees a run whose artifacts are not all there, and an
 * interrupted push is simply pushed again. Pushing again sends no object twice.
 *
 * Run names are unique in a home, not in a team: a name another home already pushed is taken, and
 * the run goes under the same name with a few letters of this home's id (`wet-lion-3-a1b2`).
 */
import { DstackError } from '../engine/errors.js';
import type { ObjectStore } from '../engine/objects.js';
import type { JobRecord, RunRecord, TagRecord } from '../engine/store/types.js';
import type { ContentHash } from '../engine/types.js';
import { teamRunOf, type TeamRun } from './records.js';
import { putJobLog } from './team-logs.js';
import type { TeamStore } from './team-store.js';
import { putTeamTag } from './team-tags.js';
import { filesOf, uploadObjects, type TransferOptions, type TransferResult } from './transfer.js';

export interface PushContext extends TransferOptions {
  readonly team: TeamStore;
  /** Where the objects are read from: the local store. */
  readonly local: ObjectStore;
  /** This home's id (home.ts): who owns the records pushed. */
  readonly home: string;
  /** The repository's identity (repo-id.ts). */
  readonly repo: string;
  readonly now?: () => number;
}

export interface PushedRun {
  readonly source: RunRecord;
  readonly jobs: readonly JobRecord[];
  /** A job's log records, in order. */
  readonly logs: (job: JobRecord) => Iterable<{ readonly stream: 'stdout' | 'stderr'; readonly at: number; readonly data: Buffer }>;
}

export interface PushResult {
  /** The run's name in the bucket: its own, unless another home's run has it. */
  readonly run: string;
  readonly objects: TransferResult;
  /** `unchanged`: the bucket already had this very record. */
  readonly record: 'created' | 'updated' | 'unchanged';
}

export async function pushRun(ctx: PushContext, pushed: PushedRun): Promise<PushResult> {
  const { team, repo, signal } = ctx;
  const withManifest = pushed.jobs.filter((j) => j.manifest);
  const objects = await uploadObjects(ctx.local, team.objects, filesOf(withManifest.map((j) => j.manifest!)), ctx);
  const manifests = new Map<number, ContentHash>();
  for (const j of withManifest) manifests.set(j.index, await team.putManifest(j.manifest!));

  for (let attempt = 0; ; attempt++) {
    const name = attempt === 0 ? pushed.source.name : `${pushed.source.name}-${ctx.home.slice(0, 2 + 2 * attempt)}`;
    const existing = await team.getRun(repo, name, signal).catch((e: unknown) => {
      if (e instanceof DstackError && e.code === 'DS0266') return undefined; // our own damaged record is rewritten
      throw e;
    });
    if (existing && existing.home !== ctx.home) continue;
    const logParts = sameLogs(existing, pushed) ? logPartsOf(existing!) : await pushLogs(ctx, name, pushed);
    const record = teamRunOf({ run: pushed.source, jobs: pushed.jobs, name, home: ctx.home, repo, manifests, logParts, now: (ctx.now ?? Date.now)() });
    const put = await team.putRun(record, signal);
    // Another home took the name between the look and the write: the next name.
    if (put.outcome === 'taken') continue;
    await team.indexCache(record, signal);
    await team.indexRun(record, signal);
    return { run: name, objects, record: put.outcome };
  }
}

/** The logs in the bucket are this run's as it is now (its final record was pushed before). */
function sameLogs(existing: TeamRun | undefined, pushed: PushedRun): boolean {
  return existing !== undefined && existing.finishedAt !== undefined && existing.finishedAt === pushed.source.finishedAt && existing.jobs.length === pushed.jobs.length;
}

function logPartsOf(run: TeamRun): Map<number, number> {
  return new Map(run.jobs.map((j) => [j.index, j.logParts ?? 0] as const));
}

async function pushLogs(ctx: PushContext, name: string, pushed: PushedRun): Promise<Map<number, number>> {
  const parts = new Map<number, number>();
  for (const job of pushed.jobs) {
    parts.set(job.index, await putJobLog(ctx.team, { repo: ctx.repo, run: name, job: job.index }, pushed.logs(job), 0, ctx.signal));
  }
  return parts;
}

export interface PushTagResult {
  readonly tag: string;
  /** The run it was taken from, pushed with it (its name in the bucket). */
  readonly run?: string;
  readonly objects: TransferResult;
  readonly created: boolean;
}

/**
 * Pushes a tag: its artifacts, the run it was taken from (so the tag's run exists for teammates),
 * and the tag record, create-only — a teammate's tag of the same name is DS0270.
 */
export async function pushTag(ctx: PushContext, tag: TagRecord, owner: string, run?: PushedRun): Promise<PushTagResult> {
  const pushedRun = run ? await pushRun(ctx, run) : undefined;
  const objects = await uploadObjects(ctx.local, ctx.team.objects, filesOf([tag.manifest]), ctx);
  const manifest = await ctx.team.putManifest(tag.manifest);
  const { created } = await putTeamTag(
    ctx.team,
    ctx.repo,
    {
      version: 1,
      name: tag.name,
      home: ctx.home,
      owner,
      ...(pushedRun ? { run: pushedRun.run } : {}),
      manifest,
      files: tag.manifest.entries.filter((e) => e.type === 'file').length,
      size: tag.manifest.size,
      createdAt: tag.createdAt,
    },
    ctx.signal,
  );
  const sent = {
    total: { objects: objects.total.objects, bytes: objects.total.bytes },
    sent: { objects: objects.sent.objects + (pushedRun?.objects.sent.objects ?? 0), bytes: objects.sent.bytes + (pushedRun?.objects.sent.bytes ?? 0) },
  };
  return { tag: tag.name, ...(pushedRun ? { run: pushedRun.run } : {}), objects: sent, created };
}
