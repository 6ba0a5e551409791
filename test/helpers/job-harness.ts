/**
 * What the backend tests (test/integration) hand a backend for one job: its JobContext, with the
 * notices and handles the backend reports collected and an AbortController for its signal; and the
 * busybox job those tests run.
 */
import type { BackendHandle, BackendNotice, JobContext } from '../../src/engine/backend.js';
import { asJobId, asRunName, type JobSpec } from '../../src/engine/types.js';
import { BUSYBOX } from './docker.js';
import { jobSpec, shellCommand } from './spec.js';

export interface Harness {
  readonly ctx: JobContext;
  readonly notices: BackendNotice[];
  readonly handles: BackendHandle[];
  readonly abort: AbortController;
}

/** The context of job `RUN/WORKFLOW` of `spec`, in run `run`. */
export function jobHarness(spec: JobSpec, run: string): Harness {
  const notices: BackendNotice[] = [];
  const handles: BackendHandle[] = [];
  const abort = new AbortController();
  const ctx: JobContext = {
    run: asRunName(run),
    job: asJobId(`${run}/${spec.workflow}`),
    spec,
    signal: abort.signal,
    notify: (n) => notices.push(n),
    recordHandle: (h) => handles.push(h),
  };
  return { ctx, notices, handles, abort };
}

/** Workflow `wf` on busybox, running `script` in `/bin/sh -c` (without one, the image's own command). */
export function busyboxSpec(overrides: Partial<JobSpec> & { script?: string } = {}): JobSpec {
  const { script, ...rest } = overrides;
  return jobSpec({ workflow: 'wf', image: BUSYBOX, command: shellCommand(script), ...rest });
}
