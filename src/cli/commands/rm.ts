import { rm } from 'node:fs/promises';
import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import type { RunRecord } from '../../engine/store/types.js';
import { isFinal } from '../../engine/types.js';
import { DstackCommand, usageError } from '../base.js';
import { confirm } from '../confirm.js';
import { runDir } from '../detach.js';
import { formatBytes } from '../format.js';
import { projectScope } from '../project-scope.js';
import { Session } from '../session.js';
import { requireRun } from '../runs.js';

export class RmCommand extends DstackCommand {
  static override paths = [['rm']];
  static override usage = Command.Usage({
    description: 'remove finished runs',
    details: `
      Removes RUN (or, with \`-a\`, every finished run of the current project; \`-a -A\` of every project) with its jobs
      and logs from the dstack home, and gives the run store's space back to the disk. Unfinished runs are refused:
      stop them first with \`dstack stop\`. Artifact files no run refers to any more are deleted by \`dstack prune\`.
      Asks first unless \`-y\`.
    `,
    examples: [
      ['Remove one run', 'dstack rm wet-mangust-1 -y'],
      ['Remove every finished run of this project', 'dstack rm -a -y'],
    ],
  });

  yes = Option.Boolean('-y,--yes', false, { description: 'do not ask for confirmation' });
  all = Option.Boolean('-a,--all', false, { description: "every finished run (of this project; with -A, of every project's)" });
  allProjects = Option.Boolean('-A,--all-projects', false, { description: 'with -a: every project' });
  runName = Option.String({ required: false, name: 'RUN' });

  async run(): Promise<number> {
    if (!this.all && !this.runName) throw usageError('name a run, or pass -a for every finished run', 'dstack rm wet-mangust-1');
    if (this.all && this.runName) throw usageError('give either RUN or -a, not both');
    if (this.allProjects && !this.all) throw usageError('-A goes with -a', 'dstack rm -a -A');
    const session = new Session();
    try {
      const store = await session.store();
      let runs: RunRecord[];
      if (this.runName) {
        const run = requireRun(store, this.runName);
        if (!isFinal(run.status)) {
          throw new DstackError('DS0104', `run ${run.name} is still ${run.status}`, { hint: `stop it first: dstack stop ${run.name}` });
        }
        runs = [run];
        await confirm(`Remove run ${run.name}?`, this.yes, `dstack rm ${run.name} -y`);
      } else {
        runs = store.runs.listRuns({ all: true, ...projectScope(this.allProjects) }).filter((r) => isFinal(r.status));
        if (runs.length === 0) {
          this.context.stderr.write('No finished runs to remove\n');
          return 0;
        }
        await confirm(`Remove ${runs.length} finished run${runs.length === 1 ? '' : 's'}?`, this.yes, `dstack rm -a${this.allProjects ? ' -A' : ''} -y`);
      }
      for (const run of runs) {
        store.runs.deleteRun(run.name);
        await rm(runDir(session.home, run.name), { recursive: true, force: true });
      }
      const space = store.prune.reclaimSpace();
      const shrank = space.before > space.after ? ` (the run store shrank from ${formatBytes(space.before)} to ${formatBytes(space.after)})` : '';
      this.context.stderr.write(`Removed ${runs.length} run${runs.length === 1 ? '' : 's'}${shrank}\n`);
      return 0;
    } finally {
      await session.close();
    }
  }
}
