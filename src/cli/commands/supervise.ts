import { hostname } from 'node:os';
import { Option } from 'clipanion';
import type { Manifest } from '../../artifacts/types.js';
import { DstackCommand } from '../base.js';
import { createRenderer } from '../render.js';
import { Session } from '../session.js';
import { exitCodeOf, superviseRun } from '../supervise.js';

/** The detached supervisor behind `run -d`: not for people; hidden from help. */
export class SuperviseCommand extends DstackCommand {
  static override paths = [['_supervise']];
  static override usage = undefined;

  runName = Option.String({ name: 'RUN' });
  rerun = Option.Boolean('--rerun', false);
  reuse = Option.Boolean('--reuse', false);

  async run(): Promise<number> {
    const session = new Session();
    try {
      const store = await session.store();
      const run = store.runs.getRun(this.runName);
      if (!run) throw new Error(`supervisor: no run ${this.runName}`);
      store.runs.setRunOwnerProcess(run.name, process.pid, hostname());
      if (!run.snapshot) throw new Error(`supervisor: run ${run.name} has no code snapshot`);
      const [{ getJson }, artifacts] = await Promise.all([import('../../artifacts/objects.js'), session.artifacts()]);
      const manifest = await getJson<Manifest>(artifacts, run.snapshot);
      if (!manifest) throw new Error(`supervisor: the code snapshot of ${run.name} is missing from the store`);
      const render = createRenderer({ stdout: this.context.stdout, stderr: this.context.stderr, prefix: true, abortBy: `run \`dstack stop -x ${run.name}\`` });
      const outcome = await superviseRun({
        session,
        run,
        jobs: store.runs.jobs(run.name),
        snapshot: { manifest, hash: run.snapshot },
        cache: { rerun: this.rerun, reuse: this.reuse },
        render,
        stderr: this.context.stderr,
        foreground: false,
      });
      return exitCodeOf(outcome, this.context.stderr);
    } finally {
      await session.close();
    }
  }
}
