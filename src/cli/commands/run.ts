import { hostname } from 'node:os';
import { Command, Option } from 'clipanion';
import { DstackError, ExitCode } from '../../engine/errors.js';
import type { RunEvent } from '../../engine/events.js';
import { DstackCommand, usageError } from '../base.js';
import { owner } from '../home.js';
import { createRenderer } from '../render.js';
import { parseRunFlags } from '../run-flags.js';
import { Session } from '../session.js';
import { exitCodeOf, superviseRun } from '../supervise.js';
import { printPlan } from '../plan-view.js';

export class RunCommand extends DstackCommand {
  static override paths = [['run']];
  static override usage = Command.Usage({
    description: 'run a workflow and the deps it needs',
    details: `
      Runs WORKFLOW from \`.dstack/workflows.yaml\` (or \`.dstack/workflows/*.yml\`) in a local Docker container, after
      running the workflows it depends on — unless an earlier run of a dep in this project succeeded, whose artifacts are
      then reused (\`--rerun\` runs every dep again).

      Arguments after the workflow that name a declared variable (\`--epochs 10\`) override it; everything else is passed
      to the workflow as \`\${{ run.args }}\`. Put \`--\` before arguments that look like dstack flags.

      Resource and spec overrides for WORKFLOW: \`--cpu N\`, \`--memory SIZE\`, \`--gpu N\`, \`--gpu-name NAME\`,
      \`--gpu-memory SIZE\`, \`--shm-size SIZE\`, \`-i/--interruptible\`, \`-e/--env K=V\`, \`-a/--artifact PATH\`,
      \`--dep WORKFLOW|:TAG\`, \`-w/--working-dir DIR\`. Sizes: \`MB/GB\` (decimal) or \`MiB/GiB\` (binary).

      Ctrl-C once stops gracefully (the container gets SIGTERM, artifacts are saved, status \`stopped\`); twice aborts.
      \`-d\` detaches: the run goes on in the background; follow it with \`dstack logs RUN -f\`.

      Exit status: 0 done, 1 a job failed, 2 bad input, 3 backend unavailable, 130 interrupted.
    `,
    examples: [
      ['Run a workflow and its deps', 'dstack run train-mnist'],
      ['Override a variable and pass extra arguments', 'dstack run train-mnist --hidden 128 --seed 3'],
      ['Show the plan without running anything', 'dstack run train-mnist --dry-run'],
      ['Run in the background', 'dstack run train-mnist -d'],
      ['More memory and an extra env variable', 'dstack run train-mnist --memory 8GB -e LOG_LEVEL=debug'],
    ],
  });

  tokens = Option.Proxy({ name: 'WORKFLOW [ARGS]' });

  async run(): Promise<number> {
    const flags = parseRunFlags(this.tokens);
    if (flags.help) {
      this.context.stdout.write(this.cli.usage(RunCommand, { detailed: true }));
      return 0;
    }
    if (!flags.workflow) throw usageError('which workflow? `dstack run` needs a workflow name', 'list them with `dstack run --dry-run <name>`, or see .dstack/workflows.yaml');
    if (flags.remote !== undefined) {
      throw new DstackError('DS0013', 'remote backends are not available in this version of dstack', { hint: 'run locally: drop --remote' });
    }
    const { findProjectRoot, loadProject } = await import('../../engine/workflow/load.js');
    const root = findProjectRoot(process.cwd());
    if (!root) {
      throw new DstackError('DS0012', 'no .dstack/workflows.yaml in this folder or any folder above it', { hint: 'create one with `dstack init`' });
    }
    const project = await loadProject(root);
    const session = new Session();
    try {
      const store = await session.store();
      const request = { project, target: flags.workflow, tokens: flags.rest, jobOverrides: flags.overrides, hostEnv: process.env, rerun: flags.rerun };
      if (flags.dryRun) {
        const { prepareRun } = await import('../../engine/submit.js');
        printPlan(this.context.stdout, prepareRun(store, request, '<run-name>'), { json: flags.json });
        return 0;
      }
      const backend = (await session.backend('local'))!;
      const [{ takeSnapshot }, { createRun }] = await Promise.all([import('../../engine/snapshot.js'), import('../../engine/submit.js'), backend.check(new AbortController().signal)]);
      const snapshot = await takeSnapshot(root);
      const { run, jobs } = createRun(store, {
        ...request,
        owner: owner(),
        backend: backend.id,
        repo: snapshot.repo,
        pid: process.pid,
        hostname: hostname(),
      });
      const render: (e: RunEvent) => void = createRenderer({
        stdout: this.context.stdout,
        stderr: this.context.stderr,
        json: flags.json,
        prefix: jobs.filter((j) => j.status !== 'done').length > 1,
      });
      render({ type: 'run-created', run: run.name, jobs: jobs.map((j) => ({ id: j.id, workflow: j.workflow })) });
      for (const j of jobs) if (j.status === 'done' && j.reason) render({ type: 'job-reused', job: j.id, workflow: j.workflow, from: j.reason.replace(/^reused /, '') as typeof j.id });

      if (flags.detach) {
        const { detachRun } = await import('../detach.js');
        await detachRun({ session, run, snapshot });
        if (flags.json) this.context.stdout.write(`${JSON.stringify({ run: run.name, detached: true })}\n`);
        else this.context.stdout.write(`${run.name}\n`);
        this.context.stderr.write(`Run ${run.name} goes on in the background; follow it with \`dstack logs ${run.name} -f\`\n`);
        return ExitCode.ok;
      }
      const outcome = await superviseRun({ session, run, jobs, snapshot, render, stderr: this.context.stderr, foreground: true });
      return exitCodeOf(outcome, this.context.stderr);
    } finally {
      await session.close();
    }
  }
}
