/**
 * Stops a run from another process. When its supervisor lives on this host, it is asked by signal
 * (SIGTERM: graceful, SIGUSR2: abort) and we wait for the run to end; when it is gone, the run's
 * containers are stopped or killed here and the jobs are ended with the right status.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { hostname } from 'node:os';
import { processAlive } from '../engine/reconcile.js';
import type { RunRecord } from '../engine/store/types.js';
import { isFinal, type JobStatus } from '../engine/types.js';
import type { Session } from './session.js';

const GRACE_SECONDS = Number(process.env.DSTACK_STOP_GRACE ?? 10);

export async function stopRun(session: Session, run: RunRecord, mode: 'graceful' | 'abort'): Promise<JobStatus> {
  const store = await session.store();
  const local = run.hostname === undefined || run.hostname === hostname();
  if (run.pid !== undefined && local && processAlive(run.pid)) {
    process.kill(run.pid, mode === 'abort' ? 'SIGUSR2' : 'SIGTERM');
    const deadline = Date.now() + (GRACE_SECONDS + 60) * 1000;
    while (Date.now() < deadline) {
      const now = store.getRun(run.name);
      if (!now || isFinal(now.status)) return now?.status ?? 'stopped';
      if (!processAlive(run.pid)) break;
      await sleep(100);
    }
  }
  // Nobody supervises the run (any more): end what it left behind ourselves.
  const backend = await session.reachable(run.backend);
  const final: JobStatus = mode === 'abort' ? 'aborted' : 'stopped';
  for (const job of store.jobs(run.name)) {
    if (isFinal(job.status)) continue;
    if (job.handle && backend) await backend.reap(job.handle).catch(() => undefined);
    store.setJobStatus(job.id, final, { reason: `${mode === 'abort' ? 'aborted' : 'stopped'} by user; its supervising process was gone, so artifacts were not saved` });
  }
  return store.getRun(run.name)?.status ?? final;
}
