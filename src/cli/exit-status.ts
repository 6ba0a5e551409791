/**
 * The exit status of a run, the same whether `dstack run` saw it end or `dstack logs -f` followed
 * it: the worst error's (a full disk: 3), else 0 done, 1 failed, 130 stopped or aborted by the user.
 */
import { Codes, ExitCode, type ErrorCode } from '../engine/errors.js';
import type { JobStatus } from '../engine/types.js';

export function exitStatusOf(status: JobStatus, jobs: readonly { readonly status: JobStatus; readonly errorCode?: ErrorCode }[]): number {
  let code: number = ExitCode.ok;
  for (const j of jobs) if (j.errorCode) code = Math.max(code, Codes[j.errorCode].exit);
  if (code !== ExitCode.ok) return code;
  switch (status) {
    case 'done':
      return ExitCode.ok;
    case 'stopped':
    case 'aborted':
      return jobs.some((j) => j.status === 'failed') ? ExitCode.jobFailed : ExitCode.interrupted;
    // `interrupted`: the cloud took a machine back (a spot instance). Not the user's Ctrl-C (130):
    // the run did not finish, as when a job fails.
    default:
      return ExitCode.jobFailed;
  }
}
