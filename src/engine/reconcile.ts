/**
 * `dstack ps` must never show a run as running when nothing runs it. A run whose supervising
 * process (the CLI, or a detached supervisor) has died is reconciled from what its backend really
 * holds: a container still running stays `running`; one that exited, or is gone, ends the job
 * `aborted` (its artifacts were never collected) and whatever it left is reaped.
 */
import { hostname } from 'node:os';
import type { Backend } from './backend.js';
import type { RunRecord, RunRecords } from './store/types.js';
import { isFinal } from './types.js';

/** True when `pid` is a live process on this host (EPERM means it exists but is not ours). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether this process can tell if the run's supervisor lives: only for runs supervised on this host. */
export function supervisorGone(run: RunRecord): boolean {
  if (isFinal(run.status) || run.pid === undefined) return false;
  if (run.hostname !== undefined && run.hostname !== hostname()) return false;
  return !processAlive(run.pid);
}

/**
 * Reconciles every unfinished run in `runs` whose supervisor is gone. `backendFor` returns the
 * backend a run was recorded with, or undefined when this process cannot reach it (left as is).
 * Returns the names of the runs it changed.
 */
export async function reconcileRuns(
  store: Pick<RunRecords, 'jobs' | 'setJobStatus'>,
  runs: readonly RunRecord[],
  backendFor: (id: string) => Backend | undefined,
): Promise<string[]> {
  const changed: string[] = [];
  for (const run of runs) {
    if (!supervisorGone(run)) continue;
    const backend = backendFor(run.backend);
    if (!backend) continue;
    let touched = false;
    for (const job of store.jobs(run.name)) {
      if (isFinal(job.status)) continue;
      const why = `the dstack process supervising it (pid ${run.pid}) died`;
      if (!job.handle) {
        touched = store.setJobStatus(job.id, 'aborted', { reason: `${why} before it started` }) || touched;
        continue;
      }
      const seen = await backend.observe(job.handle);
      if (seen.state === 'running') {
        // The CLI can die after the container started but before it recorded `running`.
        if (job.status !== 'running') touched = store.setJobStatus(job.id, 'running') || touched;
        continue;
      }
      const reason =
        seen.state === 'exited'
          ? `${why}; its container exited with code ${seen.exitCode}; artifacts were not saved`
          : `${why} and its container is gone`;
      touched =
        store.setJobStatus(job.id, 'aborted', seen.state === 'exited' ? { exitCode: seen.exitCode, reason } : { reason }) ||
        touched;
      await backend.reap(job.handle).catch(() => undefined);
    }
    if (touched) changed.push(run.name);
  }
  return changed;
}
