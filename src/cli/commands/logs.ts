import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option } from 'clipanion';
import ms from 'ms';
import { DstackError } from '../../engine/errors.js';
import type { JobId } from '../../engine/types.js';
import { isFinal } from '../../engine/types.js';
import { DstackCommand } from '../base.js';
import { readerGone } from '../output.js';
import { Session } from '../session.js';
import { requireRun } from '../runs.js';

export class LogsCommand extends DstackCommand {
  static override paths = [['logs']];
  static override usage = Command.Usage({
    description: "show a run's logs",
    details: `
      Prints the output of every job of RUN, in order; lines are prefixed with the workflow when the run has several
      jobs. Logs are kept in the dstack home, so they outlive the run and a crash of the CLI. A run this home does not
      have is looked up in the team bucket.
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
    let sinceMs: number | undefined;
    if (this.since !== undefined) {
      const d = ms(this.since as Parameters<typeof ms>[0]) as number | undefined;
      if (typeof d !== 'number' || !Number.isFinite(d) || d < 0) {
        throw new DstackError('DS0102', `--since expects a duration like 30s, 5m, 2h or 1d, got '${this.since}'`);
      }
      sinceMs = Date.now() - d;
    }
    const session = new Session();
    try {
      const store = await session.store();
      if (!store.getRun(this.runName)) {
        const { teamLogs } = await import('../team-logs.js');
        if (await teamLogs(session.home, this.runName, sinceMs, this.context)) return 0;
      }
      const run = requireRun(store, this.runName);
      let jobs = store.jobs(run.name);
      const prefix = jobs.length > 1;
      const width = Math.max(...jobs.map((j) => j.workflow.length));
      const after = new Map<JobId, number>();
      const partial = new Map<string, string>();
      /** Ends the unfinished last lines of the jobs that `which` picks, prefixed like the others. */
      const flush = (which: (job: JobId) => boolean): void => {
        for (const [key, rest] of partial) {
          const [id, stream] = key.split('\0') as [JobId, string];
          if (!which(id)) continue;
          const workflow = jobs.find((j) => j.id === id)?.workflow ?? id;
          if (rest) (stream === 'stderr' ? this.context.stderr : this.context.stdout).write(`${workflow.padEnd(width)} | ${rest}\n`);
          partial.delete(key);
        }
      };
      /** Nobody reads the log any more (`dstack logs RUN | head`): there is nothing left to do. */
      const unread = (): boolean => readerGone(this.context.stdout);
      const print = (): void => {
        const ended = new Set(jobs.filter((j) => isFinal(j.status)).map((j) => j.id));
        for (const rec of store.readLogs(run.name, { sinceMs, after })) {
          if (unread()) return;
          after.set(rec.job, rec.seq);
          const out = rec.stream === 'stderr' ? this.context.stderr : this.context.stdout;
          if (!prefix) {
            out.write(rec.data);
            continue;
          }
          // A job that has ended will print no more: its last line comes before the next job's.
          flush((id) => id !== rec.job && ended.has(id));
          const key = `${rec.job}\0${rec.stream}`;
          const lines = ((partial.get(key) ?? '') + rec.data.toString('utf8')).split('\n');
          partial.set(key, lines.pop() ?? '');
          for (const line of lines) out.write(`${rec.workflow.padEnd(width)} | ${line}\n`);
        }
      };
      print();
      if (this.follow) {
        const { reconcileRuns } = await import('../../engine/reconcile.js');
        const backend = await session.reachable(run.backend);
        for (;;) {
          const now = store.getRun(run.name);
          if (!now || isFinal(now.status) || unread()) break;
          await reconcileRuns(store, [now], () => backend);
          await sleep(250);
          jobs = store.jobs(run.name);
          print();
        }
        print();
      }
      flush(() => true);
      return 0;
    } finally {
      await session.close();
    }
  }
}
