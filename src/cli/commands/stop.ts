import { Command, Option } from 'clipanion';
import type { RunRecord } from '../../engine/store/types.js';
import { isFinal } from '../../engine/types.js';
import { DstackCommand, usageError } from '../base.js';
import { confirm } from '../confirm.js';
import { Session } from '../session.js';
import { requireRun } from '../runs.js';

export class StopCommand extends DstackCommand {
  static override paths = [['stop']];
  static override usage = Command.Usage({
    description: 'stop a run',
    details: `
      Stops RUN gracefully: its containers get SIGTERM, then SIGKILL after the grace period; artifacts are saved and the
      run ends \`stopped\`. \`-x\` aborts instead: containers are killed at once and nothing is saved (\`aborted\`).
      \`-a\` stops every unfinished run (asks first unless \`-y\`).
    `,
    examples: [
      ['Stop a run, keeping its artifacts', 'dstack stop wet-mangust-1'],
      ['Abort a run at once', 'dstack stop -x wet-mangust-1'],
      ['Stop every unfinished run without asking', 'dstack stop -a -y'],
    ],
  });

  abort = Option.Boolean('-x,--abort', false, { description: 'kill at once; save nothing' });
  yes = Option.Boolean('-y,--yes', false, { description: 'do not ask for confirmation' });
  all = Option.Boolean('-a,--all', false, { description: 'every unfinished run' });
  runName = Option.String({ required: false, name: 'RUN' });

  async run(): Promise<number> {
    if (!this.all && !this.runName) throw usageError('name a run, or pass -a for every unfinished run', 'dstack stop wet-mangust-1');
    if (this.all && this.runName) throw usageError('give either RUN or -a, not both');
    const session = new Session();
    try {
      const store = await session.store();
      let runs: RunRecord[];
      if (this.runName) {
        const run = requireRun(store, this.runName);
        if (isFinal(run.status)) {
          this.context.stderr.write(`Run ${run.name} has already ended (${run.status})\n`);
          return 0;
        }
        runs = [run];
      } else {
        runs = store.runs.listRuns({ all: true }).filter((r) => !isFinal(r.status));
        if (runs.length === 0) {
          this.context.stderr.write('No unfinished runs\n');
          return 0;
        }
        await confirm(`${this.abort ? 'Abort' : 'Stop'} ${runs.length} run${runs.length === 1 ? '' : 's'}?`, this.yes, 'dstack stop -a -y');
      }
      const { stopRun } = await import('../stop-run.js');
      for (const run of runs) {
        const status = await stopRun(session, run, this.abort ? 'abort' : 'graceful', (line) => this.context.stderr.write(`${line}\n`));
        this.context.stderr.write(`Run ${run.name} ${status}\n`);
      }
      return 0;
    } finally {
      await session.close();
    }
  }
}
