import type { JobStatus } from '../types.js';
import { isFinal } from '../types.js';

/**
 * How far along an active job is; `running` ranks first because a run with one job running and
 * another still waiting (`submitted`) or packing up (`uploading`) is, to the user, running.
 */
const ACTIVE_RANK: Readonly<Record<string, number>> = {
  submitted: 1,
  provisioning: 2,
  downloading: 3,
  uploading: 4,
  running: 5,
};

/** Which final status speaks for the run when its jobs ended differently; the worst wins. */
const FINAL_PRECEDENCE: readonly JobStatus[] = ['failed', 'aborted', 'stopped', 'interrupted', 'done'];

/**
 * A run's status from its jobs' statuses.
 *
 * - While any job is not final, the run is active: `running` if any job runs, otherwise the most
 *   advanced active status (`uploading` > `downloading` > `provisioning` > `submitted`). A job that
 *   already finished does not make an active run final.
 * - When every job is final: `failed` if any failed, else `aborted`, `stopped`, `interrupted`, and
 *   `done` only when all are done.
 * - No jobs at all (never stored: a run has at least one job) reads as `submitted`.
 */
export function aggregateStatus(jobStatuses: readonly JobStatus[]): JobStatus {
  if (jobStatuses.length === 0) return 'submitted';
  let active: JobStatus | undefined;
  for (const s of jobStatuses) {
    if (isFinal(s)) continue;
    if (active === undefined || (ACTIVE_RANK[s] ?? 0) > (ACTIVE_RANK[active] ?? 0)) active = s;
  }
  if (active !== undefined) return active;
  for (const s of FINAL_PRECEDENCE) if (jobStatuses.includes(s)) return s;
  return 'done';
}
