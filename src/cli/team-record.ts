/**
 * The team bucket in a run: the second cache look-up (a teammate's successful job with the same
 * fingerprint is reused, its artifacts fetched), and, for a run on a remote backend, its record kept
 * in the bucket — written when it starts (so the team sees it running) and pushed whole when it
 * ends. Both are quiet about a bucket that cannot be reached: a warning, and the run goes on.
 */
import { DstackError, formatError } from '../engine/errors.js';
import type { RemoteCache } from '../engine/remote-cache.js';
import type { JobRecord, LogRecord, LogStore, RunReader, RunRecord } from '../engine/store/types.js';
import type { TeamStore } from '../remote-store/team-store.js';
import { homeId } from './home.js';
import type { Session } from './session.js';
import { defaultTeamRemote, openTeam, repoOf } from './team.js';

/** What recording a run in the bucket reads of the local store. */
export type RecordedStore = { readonly runs: RunReader; readonly logs: LogStore };

export interface TeamOfRun {
  /** The engine's second cache look-up; opens the bucket on its first question. */
  readonly cache: RemoteCache;
  /** Records the run in the bucket (a remote run's, at its start and its end). */
  readonly record: (store: RecordedStore, run: RunRecord, stage: 'start' | 'end') => Promise<void>;
  readonly close: () => Promise<void>;
}

/**
 * Undefined when no team bucket is configured (or several, and none is the default). A run on a
 * remote with a bucket of its own (`aws:NAME`, its `--bucket`) uses that one.
 */
export async function teamOfRun(session: Session, root: string, stderr: NodeJS.WritableStream, backendId?: string): Promise<TeamOfRun | undefined> {
  const remote = await defaultTeamRemote(session.home, backendId).catch(() => undefined);
  if (!remote) return undefined;
  let opened: Promise<{ team: TeamStore; repo: string; cache: RemoteCache }> | undefined;
  let warned = false;
  const warn = (e: unknown): void => {
    if (warned || !(e instanceof DstackError)) return;
    warned = true;
    stderr.write(`warning: the team bucket ${remote.name} is not usable, the run goes on without it:\n${formatError(e)}\n`);
  };
  const open = () =>
    (opened ??= (async () => {
      const [{ teamCache }, team, repo, local] = await Promise.all([import('../remote-store/team-cache.js'), openTeam(remote), repoOf(root), session.artifacts()]);
      return { team, repo, cache: teamCache({ team, repo, local: local.objects, onUnavailable: warn }) };
    })());
  return {
    cache: {
      find: async (fp, workflow, signal) => {
        try {
          return await (await open()).cache.find(fp, workflow, signal);
        } catch (e) {
          warn(e);
          if (!(e instanceof DstackError)) throw e;
          return undefined;
        }
      },
      fetch: async (hit, signal) => (await open()).cache.fetch(hit, signal),
    },
    record: async (store, current, stage) => {
      try {
        const { team, repo } = await open();
        await recordRun(session, team, repo, store, current, stage);
      } catch (e) {
        if (!(e instanceof DstackError)) throw e;
        warn(e);
      }
    },
    close: async () => {
      if (opened) await (await opened.catch(() => undefined))?.team.bucket.close();
    },
  };
}

async function recordRun(session: Session, team: TeamStore, repo: string, store: RecordedStore, run: RunRecord, stage: 'start' | 'end'): Promise<void> {
  const [{ pushRun }, local, home] = await Promise.all([import('../remote-store/push.js'), session.artifacts(), homeId(session.home)]);
  const now = store.runs.getRun(run.name) ?? run;
  const jobs = store.runs.jobs(run.name);
  // At the start only the record: no artifacts or logs exist yet.
  const logs = (job: JobRecord): LogRecord[] => (stage === 'start' ? [] : [...store.logs.readLogs(run.name)].filter((l) => l.job === job.id));
  await pushRun({ team, local: local.objects, home, repo }, { source: now, jobs, logs });
}
