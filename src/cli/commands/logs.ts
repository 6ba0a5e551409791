import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option } from 'clipanion';
import ms from 'ms';
import { DstackError } from '../../engine/errors.js';
import type { JobRecord, LogRecord, RunRecord, Store } from '../../engine/store/types.js';
import type { JobId } from '../../engine/types.js';
import { isFinal } from '../../engine/types.js';
import { DstackCommand } from '../base.js';
import { exitStatusOf } from '../exit-status.js';
import { PacedWriter } from '../paced-writer.js';
import { createRenderer } from '../render.js';
import { Session } from '../session.js';
import { requireRun } from '../runs.js';

/** A line longer than this (output with no newline at all) is printed in pieces, so memory stays bounded. */
const MAX_LINE = 64 * 1024;
const POLL_MS = 250;

export class LogsCommand extends DstackCommand {
  static override paths = [['logs']];
  static override usage = Command.Usage({
    description: "show a run's logs",
    details: `
      Prints the output of every job of RUN, in order; lines are prefixed with the workflow when the run has several
      jobs. Logs are kept in the dstack home, so they outlive the run and a crash of the CLI; each job keeps up to
      \`DSTACK_LOG_LIMIT\` (default 32MiB) of output — its start and its end, with a marker where the middle was cut.
      A run this home does not have is looked up in the team bucket.

      With \`-f\`, follows the run until it ends, then prints its status and exits like \`dstack run\` would have: 0 done,
      1 failed, 3 ended by the machine (a full disk), 130 stopped or aborted.
    `,
    examples: [
      ['The whole log of a run', 'dstack logs wet-mangust-1'],
      ['Follow a running (or detached) run until it ends', 'dstack logs wet-mangust-1 -f'],
      ['Only the last five minutes', 'dstack logs wet-mangust-1 --since 5m'],
    ],
  });

  follow = Option.Boolean('-f,--follow', false, { description: 'keep printing new output until the run ends' });
  since = Option.String('--since', { description: 'only output newer than this (5m, 2h, 1d)' });
  runName = Option.String({ name: 'RUN' });

  async run(): Promise<number> {
    const sinceMs = this.since === undefined ? undefined : Date.now() - parseSince(this.since);
    const session = new Session();
    try {
      const store = await session.store('read');
      if (!store.runs.getRun(this.runName)) {
        const { teamLogs } = await import('../team-logs.js');
        if (await teamLogs(session.home, this.runName, sinceMs, this.context)) return 0;
      }
      const run = requireRun(store, this.runName);
      const printer = new LogPrinter(this.context.stdout, this.context.stderr, store.runs.jobs(run.name));
      const after = new Map<JobId, number>();
      const print = async (): Promise<void> => {
        await printer.urls();
        await printer.print(store.logs.readLogs(run.name, { sinceMs, after }), after);
      };
      await print();
      if (!this.follow || store.readOnly) {
        await printer.end();
        // Nothing can record progress in a read-only home: there is nothing to follow.
        if (this.follow) this.context.stderr.write(`The dstack home is read-only, so run ${run.name} cannot change; not following it\n`);
        return 0;
      }
      const final = await this.followRun(session, store, run, printer, print);
      await printer.end();
      if (!printer.open) return 0;
      createRenderer({ stdout: this.context.stdout, stderr: this.context.stderr })({ type: 'run-finished', run: final.run.name, status: final.run.status });
      return exitStatusOf(final.run.status, final.jobs);
    } finally {
      await session.close();
    }
  }

  /** Prints new output every POLL_MS until the run is final (reconciling it, if its supervisor died). */
  private async followRun(
    session: Session,
    store: Store,
    run: RunRecord,
    printer: LogPrinter,
    print: () => Promise<void>,
  ): Promise<{ readonly run: RunRecord; readonly jobs: readonly JobRecord[] }> {
    const { reconcileRuns } = await import('../../engine/reconcile.js');
    const backend = await session.reachable(run.backend);
    for (;;) {
      const now = store.runs.getRun(run.name) ?? run;
      if (isFinal(now.status) || !printer.open) break;
      if (backend) await reconcileRuns(store.runs, [now], () => backend);
      await sleep(POLL_MS);
      printer.jobs = store.runs.jobs(run.name);
      await print();
    }
    // What the run wrote between the last poll and its end.
    await print();
    return { run: store.runs.getRun(run.name) ?? run, jobs: store.runs.jobs(run.name) };
  }
}

function parseSince(text: string): number {
  const d = ms(text as Parameters<typeof ms>[0]) as number | undefined;
  if (typeof d !== 'number' || !Number.isFinite(d) || d < 0) {
    throw new DstackError('DS0102', `--since expects a duration like 30s, 5m, 2h or 1d, got '${text}'`);
  }
  return d;
}

/**
 * Writes log records as they are read, waiting for a slow reader. With several jobs each line gets
 * its workflow as a prefix, and a job's unfinished last line is held until its next record, or
 * printed when the job has ended and another job's output comes.
 */
class LogPrinter {
  private readonly out: PacedWriter;
  private readonly err: PacedWriter;
  private readonly prefix: boolean;
  private readonly width: number;
  private readonly partial = new Map<string, { readonly job: JobId; readonly workflow: string; readonly stream: LogRecord['stream']; text: string }>();

  constructor(
    stdout: NodeJS.WritableStream,
    stderr: NodeJS.WritableStream,
    public jobs: readonly JobRecord[],
  ) {
    this.out = new PacedWriter(stdout);
    this.err = new PacedWriter(stderr);
    this.prefix = jobs.length > 1;
    this.width = Math.max(...jobs.map((j) => j.workflow.length));
  }

  private readonly announced = new Set<string>();

  /**
   * Says once, on stderr, where each running job's published ports are reached, as `dstack run`
   * did when they opened: a detached run printed it nowhere else.
   */
  async urls(): Promise<void> {
    for (const j of this.jobs) {
      if (j.status !== 'running') continue;
      for (const p of j.ports ?? []) {
        const key = `${j.id} ${p.port}`;
        if (this.announced.has(key)) continue;
        this.announced.add(key);
        await this.err.write(`  ${j.workflow}: port ${p.port} → ${p.url}\n`);
      }
    }
  }

  /** False once stdout's reader went away (`| head`): nothing more is worth reading. */
  get open(): boolean {
    return this.out.open;
  }

  async print(records: Iterable<LogRecord>, after: Map<JobId, number>): Promise<void> {
    const ended = new Set(this.jobs.filter((j) => isFinal(j.status)).map((j) => j.id));
    for (const rec of records) {
      after.set(rec.job, rec.seq);
      const w = rec.stream === 'stderr' ? this.err : this.out;
      if (!this.prefix) {
        await w.write(rec.data);
      } else {
        // A job that has ended will print no more: its last line comes before the next job's.
        await this.flush((id) => id !== rec.job && ended.has(id));
        await this.lines(rec, w);
      }
      if (!this.out.open) return;
    }
  }

  /** Ends every unfinished last line. */
  end(): Promise<void> {
    return this.flush(() => true);
  }

  private async lines(rec: LogRecord, w: PacedWriter): Promise<void> {
    const key = `${rec.job}\0${rec.stream}`;
    const held = this.partial.get(key) ?? { job: rec.job, workflow: rec.workflow, stream: rec.stream, text: '' };
    const lines = (held.text + rec.data.toString('utf8')).split('\n');
    held.text = lines.pop() ?? '';
    if (held.text.length > MAX_LINE) {
      lines.push(held.text.slice(0, MAX_LINE));
      held.text = held.text.slice(MAX_LINE);
    }
    this.partial.set(key, held);
    for (const line of lines) await w.write(`${rec.workflow.padEnd(this.width)} | ${line}\n`);
  }

  private async flush(which: (job: JobId) => boolean): Promise<void> {
    for (const [key, held] of this.partial) {
      if (!which(held.job)) continue;
      this.partial.delete(key);
      if (held.text) await (held.stream === 'stderr' ? this.err : this.out).write(`${held.workflow.padEnd(this.width)} | ${held.text}\n`);
    }
  }
}
