/**
 * What happens during a run, as data. The executor emits these; the CLI renders them in one place
 * (src/cli/render.ts), and `--json` prints them as they are.
 */
import type { BackendNotice } from './backend.js';
import type { RemoteOrigin } from './remote-cache.js';
import type { JobId, JobStatus, RunName } from './types.js';

export type RunEvent =
  | { readonly type: 'run-created'; readonly run: RunName; readonly jobs: readonly { readonly id: JobId; readonly workflow: string }[] }
  /** `origin`: the hit came from the team's records (a bucket), not this home's. */
  | { readonly type: 'job-reused'; readonly job: JobId; readonly workflow: string; readonly from: JobId; readonly origin?: RemoteOrigin }
  /** Another process is producing this job's fingerprint: the job waits for it, then reuses it (or takes over). */
  | { readonly type: 'job-waiting'; readonly job: JobId; readonly workflow: string; readonly producer: JobId; readonly producerRun: RunName }
  | {
      readonly type: 'job-status';
      readonly job: JobId;
      readonly workflow: string;
      readonly status: JobStatus;
      readonly exitCode?: number;
      readonly reason?: string;
    }
  | { readonly type: 'job-log'; readonly job: JobId; readonly workflow: string; readonly stream: 'stdout' | 'stderr'; readonly data: Buffer }
  /** An interrupted job runs again on a new machine: resubmission `attempt` of `of`. */
  | { readonly type: 'job-retry'; readonly job: JobId; readonly workflow: string; readonly attempt: number; readonly of: number; readonly reason: string }
  | { readonly type: 'job-notice'; readonly job: JobId; readonly workflow: string; readonly notice: BackendNotice }
  | { readonly type: 'artifacts-saved'; readonly job: JobId; readonly workflow: string; readonly files: number; readonly bytes: number }
  | { readonly type: 'stopping'; readonly run: RunName; readonly mode: 'graceful' | 'abort' }
  | { readonly type: 'run-finished'; readonly run: RunName; readonly status: JobStatus };
