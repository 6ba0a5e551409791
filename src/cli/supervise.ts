/**
 * Drives one run to its end in this process — the foreground CLI, or the detached supervisor —
 * and turns signals into the two-stage stop: the first SIGINT (Ctrl-C) or a SIGTERM stops
 * gracefully, a second SIGINT or a SIGUSR2 (`dstack stop -x`) aborts.
 */
import { RunControl } from '../engine/control.js';
import { formatError } from '../engine/errors.js';
import type { RunEvent } from '../engine/events.js';
import type { RunOutcome, StoredSnapshot } from '../engine/executor.js';
import type { JobRecord, RunRecord } from '../engine/store/types.js';
import { secretSourceOf } from '../engine/secrets.js';
import { exitStatusOf } from './exit-status.js';
import { logLimitFrom } from './log-limit.js';
import { readSecrets } from './secrets-file.js';
import type { Session } from './session.js';

export interface SuperviseOptions {
  readonly session: Session;
  readonly run: RunRecord;
  readonly jobs: readonly JobRecord[];
  readonly snapshot: StoredSnapshot;
  /** `--rerun` / `--reuse`. */
  readonly cache: { readonly rerun?: boolean; readonly reuse?: boolean };
  readonly render: (event: RunEvent) => void;
  readonly stderr: NodeJS.WritableStream;
  /** In the foreground, the first Ctrl-C announces the graceful stop. */
  readonly foreground: boolean;
}

export async function superviseRun(options: SuperviseOptions): Promise<RunOutcome> {
  const { session, run, render } = options;
  const [store, artifacts, backend, { executeRun }] = await Promise.all([
    session.store(),
    session.artifacts(),
    session.backend(run.backend),
    import('../engine/executor.js'),
  ]);
  if (!backend) throw new Error(`backend ${run.backend} is not offered by this build`);
  const control = new RunControl();
  const onInt = (): void => {
    const mode = control.interrupt();
    render({ type: 'stopping', run: run.name, mode: mode === 'stopping' ? 'graceful' : 'abort' });
  };
  const onTerm = (): void => {
    if (control.mode !== 'running') return;
    control.stop();
    render({ type: 'stopping', run: run.name, mode: 'graceful' });
  };
  const onAbort = (): void => {
    control.abort();
    render({ type: 'stopping', run: run.name, mode: 'abort' });
  };
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  process.on('SIGUSR2', onAbort);
  process.on('SIGHUP', onTerm);
  try {
    const secrets = secretSourceOf(readSecrets(session.home));
    return await executeRun({
      store,
      artifacts,
      backend,
      run,
      jobs: options.jobs,
      snapshot: options.snapshot,
      cache: options.cache,
      secrets,
      control,
      onEvent: render,
      graceSeconds: Number(process.env.DSTACK_STOP_GRACE ?? 10),
      logLimit: logLimitFrom(),
    });
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    process.off('SIGUSR2', onAbort);
    process.off('SIGHUP', onTerm);
  }
}

/** The process's exit code for a run's outcome; prints the errors that ended jobs. */
export function exitCodeOf(outcome: RunOutcome, stderr: NodeJS.WritableStream): number {
  for (const job of outcome.jobs) if (job.error) stderr.write(`${formatError(job.error)}\n`);
  return exitStatusOf(
    outcome.status,
    outcome.jobs.map((j) => ({ status: j.status, ...(j.error && { errorCode: j.error.code }) })),
  );
}
