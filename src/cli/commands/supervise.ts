import { rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { Command, Option } from 'clipanion';
import { DstackCommand } from '../base.js';
import { createRenderer } from '../render.js';
import { Session } from '../session.js';
import { exitCodeOf, superviseRun } from '../supervise.js';

/** The detached supervisor behind `run -d`: not for people; hidden from help. */
export class SuperviseCommand extends DstackCommand {
  static override paths = [['_supervise']];
  static override usage = undefined;

  runName = Option.String({ name: 'RUN' });
  code = Option.String('--code', { required: true });

  async run(): Promise<number> {
    const session = new Session();
    try {
      const store = await session.store();
      const run = store.getRun(this.runName);
      if (!run) throw new Error(`supervisor: no run ${this.runName}`);
      store.setRunOwnerProcess(run.name, process.pid, hostname());
      const { takeSnapshot } = await import('../../engine/snapshot.js');
      const snapshot = await takeSnapshot(this.code);
      const render = createRenderer({ stdout: this.context.stdout, stderr: this.context.stderr, prefix: true });
      const outcome = await superviseRun({ session, run, jobs: store.jobs(run.name), snapshot, render, stderr: this.context.stderr, foreground: false });
      return exitCodeOf(outcome, this.context.stderr);
    } finally {
      // The staged copy of the code served this run only.
      await rm(this.code, { recursive: true, force: true }).catch(() => undefined);
      await session.close();
    }
  }
}
