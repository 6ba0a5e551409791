/**
 * Stops a run from another process. When its supervisor lives on this host, it is asked by signal
 * (SIGTERM: graceful, SIGUSR2: abort) and we wait for the run to end; when it is gone, the run's
 * containers are stopped or killed here and the jobs are ended with the right status. Either way the
 * user is told first what is being waited for: a stop that takes seconds must not look hung.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { hostname } from 'node:os';
import { processAlive } from '../engine/reconcile.js';
import type { JobRecord, RunRecord } from '../engine/store/types.js';
import { isFinal, type JobStatus } from '../engine/types.js';
import type { Session } from './session.js';

const GRACE_SECONDS = Number(process.env.DSTACK_STOP_GRACE ?? 10);

export async function stopRun(session: Session, run: RunRecord, mode: 'graceful' | 'abort', say: (line: string) => void): Promise<JobStatus> {
  const store = await session.store();
  const local = run.hostname === undefined || run.hostname === hostname();
  const open = store.runs.jobs(run.name).filter((j) => !isFinal(j.status));
  if (run.pid !== undefined && local && processAlive(run.pid)) {
    say(waitingFor(run, open, mode));
    process.kill(run.pid, mode === 'abort' ? 'SIGUSR2' : 'SIGTERM');
    const deadline = Date.now() + (GRACE_SECONDS + 60) * 1000;
    while (Date.now() < deadline) {
      const now = store.runs.getRun(run.name);
      if (!now || isFinal(now.status)) return now?.status ?? 'stopped';
      if (!processAlive(run.pid)) break;
      await sleep(50);
    }
  }
  // Nobody supervises the run (any more): end what it left behind ourselves.
  say(`${mode === 'abort' ? 'Aborting' : 'Stopping'} ${run.name}: the dstack process that ran it is gone; removing its containers here (artifacts are not saved)`);
  const backend = await session.reachable(run.backend);
  const final: JobStatus = mode === 'abort' ? 'aborted' : 'stopped';
  for (const job of store.runs.jobs(run.name)) {
    if (isFinal(job.status)) continue;
    if (job.handle && backend) await backend.reap(job.handle).catch(() => undefined);
    store.runs.setJobStatus(job.id, final, { reason: `${mode === 'abort' ? 'aborted' : 'stopped'} by user; its supervising process was gone, so artifacts were not saved` });
  }
  return store.runs.getRun(run.name)?.status ?? final;
}

/** `Stopping wet-mangust-1: waiting for train (running) to exit on SIGTERM (SIGKILL after 10 s) and save its artifacts`. */
function waitingFor(run: RunRecord, open: readonly JobRecord[], mode: 'graceful' | 'abort'): string {
  // Jobs not started yet will not start: only those under way are waited for.
  const started = open.filter((j) => j.status !== 'submitted');
  const names = started.map((j) => `${j.workflow} (${j.status})`);
  const list = names.length <= 1 ? (names[0] ?? '') : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
  if (mode === 'abort') return `Aborting ${run.name}: ${list ? `killing ${list}; ` : ''}nothing is saved`;
  if (!list) return `Stopping ${run.name}: no job has started; its jobs will not start`;
  const its = started.length === 1 ? 'its' : 'their';
  return `Stopping ${run.name}: waiting for ${list} to exit on SIGTERM (SIGKILL after ${GRACE_SECONDS} s) and save ${its} artifacts`;
}
