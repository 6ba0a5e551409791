import { hostname } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'clipanion';
import type { Backend, MachineOffer } from '../../engine/backend.js';
import { DstackError, ExitCode } from '../../engine/errors.js';
import type { RunEvent } from '../../engine/events.js';
import type { Project } from '../../engine/types.js';
import { choosePlacement, type PlacementChoice } from '../../engine/placement.js';
import type { JobDecision } from '../../engine/explain.js';
import type { PreparedRun, SubmitRequest } from '../../engine/submit.js';
import type { RunRecord } from '../../engine/store/types.js';
import { DstackCommand, usageError } from '../base.js';
import { renderNotices, whichWorkflow } from '../diagnostics-view.js';
import { owner } from '../home.js';
import { createRenderer } from '../render.js';
import { RUN_FLAG_NAMES, parseRunFlags, type RunFlags } from '../run-flags.js';
import { Session } from '../session.js';
import { exitCodeOf, superviseRun } from '../supervise.js';
import { printPlan } from '../plan-view.js';

export class RunCommand extends DstackCommand {
  static override paths = [['run']];
  static override usage = Command.Usage({
    description: 'run a workflow and the deps it needs',
    details: `
      Runs WORKFLOW from \`.dstack/workflows.yaml\` (or \`.dstack/workflows/*.yml\`) in a local Docker container, after
      the workflows it depends on. Each job has a fingerprint over everything that can change its output (the image's
      digest, commands, env, variables, arguments, the content of its code or its \`inputs:\`, its deps' artifacts); a
      dep whose fingerprint matches an earlier successful job is reused, not run. WORKFLOW itself always runs unless
      \`--reuse\`; \`--rerun\` runs everything. \`--dry-run --explain\` says, for each job, whether it is cached and which
      input changed since its last run.

      Arguments after the workflow that name a declared variable (\`--epochs 10\`) override it; everything else is passed
      to WORKFLOW (not to its deps) as \`\${{ run.args }}\`. An argument one edit away from a variable or a dstack flag
      (\`--epoch\`, \`--dryrun\`) is refused with a suggestion. Put \`--\` before arguments meant for the workflow as they are.

      Without WORKFLOW, lists the workflows that can run and those that cannot (and why). A workflow with an error is
      refused, with the workflows that depend on it; the others run, and the errors elsewhere are shown as warnings.
      \`resources.local: true\` in a workflow runs it locally, \`resources.remote: true\` on the default remote;
      \`--remote\` on the command line wins over both.

      Resource and spec overrides for WORKFLOW: \`--cpu N\`, \`--memory SIZE\`, \`--gpu N\`, \`--gpu-name NAME\`,
      \`--gpu-memory SIZE\`, \`--shm-size SIZE\`, \`-i/--interruptible\`, \`-e/--env K=V\`, \`-a/--artifact PATH\`,
      \`--dep WORKFLOW|:TAG\`, \`-w/--working-dir DIR\`. Sizes: \`MB/GB\` (decimal) or \`MiB/GiB\` (binary).

      \`--remote NAME\` runs on the remote NAME (\`dstack config ssh\` adds a pool of your own machines); \`--remote\` alone on
      the default one. The code and the deps' artifacts are sent to a free host of the pool (only what it does not
      have yet), logs come back live, published ports through an SSH tunnel, artifacts into the local store.
      \`--retry N\` (or \`retry: N\` in a workflow) runs a job again on a new machine when its spot instance is taken
      back (status \`interrupted\`), up to N times.

      Ctrl-C once stops gracefully (the container gets SIGTERM, artifacts are saved, status \`stopped\`); twice aborts.
      \`-d\` detaches: the run goes on in the background; follow it with \`dstack logs RUN -f\`.

      Exit status: 0 done, 1 a job failed, 2 bad input, 3 backend unavailable, 130 interrupted.
    `,
    examples: [
      ['Run a workflow and its deps', 'dstack run train-mnist'],
      ['Override a variable and pass extra arguments', 'dstack run train-mnist --hidden 128 --seed 3'],
      ['Show the plan without running anything', 'dstack run train-mnist --dry-run'],
      ['Say which jobs are cached and why the others run', 'dstack run train-mnist --dry-run --explain'],
      ['Run every dep again, whatever is cached', 'dstack run train-mnist --rerun'],
      ['Run in the background', 'dstack run train-mnist -d'],
      ['Run on the SSH pool named lab (see `dstack config ssh`)', 'dstack run train-mnist --remote lab'],
      ['Run on the default remote', 'dstack run train-mnist --remote'],
      ['On a spot instance, run again on a new one up to twice if it is taken back', 'dstack run train-mnist --remote -i --retry 2'],
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
    const session = new Session();
    const { root, project } = await loadProject(flags, session.home);
    const workflow = flags.workflow!;
    // A bad DSTACK_LOG_LIMIT or DSTACK_ARTIFACT_LIMIT is refused before a run is recorded (the supervisor reads it again).
    (await import('../log-limit.js')).logLimitFrom();
    (await import('../../backends/docker/artifact-limit.js')).artifactLimitFrom();
    try {
      const backendId = await backendIdOf(session.home, choosePlacement(project.workflows.get(workflow)?.placement, flags.remote), workflow);
      const external = await externalDeps(session, project, workflow, flags.overrides?.deps);
      const request: SubmitRequest = {
        project,
        target: workflow,
        tokens: flags.rest,
        reservedFlags: RUN_FLAG_NAMES,
        jobOverrides: flags.overrides,
        ...(flags.retry !== undefined ? { retry: flags.retry } : {}),
        hostEnv: process.env,
        ...(external ? { external } : {}),
      };
      const cache = { rerun: flags.rerun, reuse: flags.reuse };
      if (flags.dryRun) return await this.dryRun(session, root, backendId, request, { ...cache, json: flags.json, explain: flags.explain });
      const { run, jobs, snapshot, prepared } = await this.record(session, root, backendId, request);
      renderNotices(this.context.stderr, prepared.plan.notices);
      const render: (e: RunEvent) => void = createRenderer({ stdout: this.context.stdout, stderr: this.context.stderr, json: flags.json, prefix: jobs.length > 1 });
      render({ type: 'run-created', run: run.name, jobs: jobs.map((j) => ({ id: j.id, workflow: j.workflow })) });
      if (flags.detach) return await this.detach(session, run, cache, flags.json);
      const outcome = await superviseRun({ session, run, jobs, snapshot, cache, render, stderr: this.context.stderr, foreground: true });
      return exitCodeOf(outcome, this.context.stderr);
    } finally {
      await session.close();
    }
  }

  /**
   * Records the run: what the backend cannot run and its credentials are checked, and what earlier
   * runs left is swept, before anything is recorded or costs money; the code is stored by content,
   * so the run sees it as it is now whatever is edited later, and a detached run needs no copy.
   */
  private async record(session: Session, root: string, backendId: string, request: SubmitRequest) {
    const store = await session.store();
    const backend = (await session.backend(backendId))!;
    const [{ takeSnapshot }, { prepareRecordable, recordRun }, { hashTree }, { putJson }, { preflight }, artifacts] = await Promise.all([
      import('../../engine/snapshot.js'),
      import('../../engine/submit.js'),
      import('../../artifacts/tree.js'),
      import('../../artifacts/objects.js'),
      import('../../engine/preflight.js'),
      session.artifacts(),
    ]);
    const name = store.runs.reserveName();
    const prepared = prepareRecordable(store, request, name);
    // The snapshot's git calls run meanwhile.
    const snapshotting = takeSnapshot(root);
    snapshotting.catch(() => undefined);
    await preflight(backend, prepared.jobs, new AbortController().signal);
    if (backend.owned) {
      // What earlier runs left running in this cloud ends before anything new costs money.
      const { sweepBackends, sweptLines } = await import('../machines.js');
      for (const line of sweptLines(await sweepBackends(store.runs, [backend]))) this.context.stderr.write(`${line}\n`);
    }
    // What earlier runs of this home left (containers, job folders) goes while the snapshot is taken.
    const sweeping = backend.leftovers
      ? import('../machines.js').then(({ sweepLeftoversOf }) => sweepLeftoversOf(store.runs, backend, this.context.stderr))
      : undefined;
    const [snapshot] = await Promise.all([snapshotting, sweeping]);
    const tree = await hashTree({ root: snapshot.root, files: snapshot.files, cache: store.fileHashes, store: artifacts });
    const snapshotHash = await putJson(artifacts, tree.manifest);
    const { run, jobs } = recordRun(store.runs, name, prepared, {
      ...request,
      owner: owner(),
      backend: backend.id,
      repo: snapshot.repo,
      pid: process.pid,
      hostname: hostname(),
    });
    store.runs.setRunSnapshot(run.name, snapshotHash);
    return { run, jobs, prepared, snapshot: { manifest: tree.manifest, hash: snapshotHash } };
  }

  /** `-d`: the run goes on in a background supervisor; its name is the output. */
  private async detach(session: Session, run: RunRecord, cache: { readonly rerun: boolean; readonly reuse: boolean }, json: boolean): Promise<number> {
    const { detachRun } = await import('../detach.js');
    await detachRun({ session, run, cache });
    this.context.stdout.write(json ? `${JSON.stringify({ run: run.name, detached: true })}\n` : `${run.name}\n`);
    this.context.stderr.write(`Run ${run.name} goes on in the background; follow it with \`dstack logs ${run.name} -f\`\n`);
    return ExitCode.ok;
  }

  /** `--dry-run [--explain]`: the plan and each job's cache decision, nothing run, pulled or stored. */
  private async dryRun(
    session: Session,
    root: string,
    backendId: string,
    request: SubmitRequest,
    opts: { readonly rerun: boolean; readonly reuse: boolean; readonly json: boolean; readonly explain: boolean },
  ): Promise<number> {
    const [{ prepareRun }, { takeSnapshot }, { hashTree }, { getJson }, { explainRun }] = await Promise.all([
      import('../../engine/submit.js'),
      import('../../engine/snapshot.js'),
      import('../../artifacts/tree.js'),
      import('../../artifacts/objects.js'),
      import('../../engine/explain.js'),
    ]);
    const store = await session.store();
    // The snapshot's git calls run while the plan is resolved (CPU): ~20 ms of a cached
    // 1,000-workflow dry run. A planning error still wins; the snapshot is then dropped.
    const snapshotting = takeSnapshot(root);
    snapshotting.catch(() => undefined);
    const prepared = prepareRun(store, request, '<run-name>');
    renderNotices(this.context.stderr, prepared.plan.notices);
    const [backend, artifacts, snapshot, { assertSupported }] = await Promise.all([session.backend(backendId), session.artifacts(), snapshotting, import('../../engine/preflight.js')]);
    assertSupported(backend!, prepared.jobs);
    // Hashed to decide, not stored: only the stat cache learns from a dry run.
    const tree = await hashTree({ root: snapshot.root, files: snapshot.files, cache: store.fileHashes });
    const team = await (await import('../team-record.js')).teamOfRun(session, snapshot.repo.root, this.context.stderr, backendId);
    const decisions = await explainRun({
      store,
      backend: backend!,
      prepared,
      repoRoot: snapshot.repo.root,
      snapshot: tree.manifest,
      readListing: (h) => getJson(artifacts, h),
      target: request.target,
      rerun: opts.rerun,
      reuse: opts.reuse,
      signal: new AbortController().signal,
      ...(team ? { remoteCache: team.cache } : {}),
    }).finally(() => team?.close());
    const offers = backend!.offers ? await offersOf(backend!, prepared, decisions) : undefined;
    printPlan(this.context.stdout, prepared, decisions, { json: opts.json, explain: opts.explain, ...(offers ? { offers } : {}) });
    return 0;
  }
}

/** The project around the working folder, loaded (through the home's cache of parsed projects) and checked against the flags. */
async function loadProject(flags: RunFlags, home: string): Promise<{ readonly root: string; readonly project: Project }> {
  const [{ findProjectRoot }, { loadProjectCached }] = await Promise.all([import('../../engine/workflow/files.js'), import('../../engine/workflow/project-cache.js')]);
  const root = findProjectRoot(process.cwd());
  if (!root) {
    throw new DstackError('DS0012', 'no .dstack/workflows.yaml in this folder or any folder above it', { hint: 'create one with `dstack init`' });
  }
  if (flags.rerun && flags.reuse) throw usageError('--rerun and --reuse ask for opposite things; pick one');
  const project = await loadProjectCached(root, { dir: join(home, 'project-cache') });
  if (!flags.workflow) throw whichWorkflow(project);
  if (flags.explain && !flags.dryRun) throw usageError('--explain goes with --dry-run', `dstack run ${flags.workflow} --dry-run --explain`);
  return { root, project };
}

/** Deps of the plan on other repositories, resolved through the team bucket (none: undefined). */
async function externalDeps(session: Session, project: Project, target: string, extra: readonly string[] | undefined) {
  const [{ planRun, parseDepFlag }, { externalDepsOf }] = await Promise.all([import('../../engine/plan.js'), import('../external-deps.js')]);
  const deps = [...planRun(project, target, extra).jobs.flatMap((j) => j.workflow.deps), ...(extra ?? []).map(parseDepFlag)];
  return externalDepsOf(session, project.root, deps, { fetch: false });
}

/** For each job that would run, the machines the backend would try, in order (one question per shape of resources). */
async function offersOf(backend: Backend, prepared: PreparedRun, decisions: readonly JobDecision[]): Promise<(readonly MachineOffer[] | undefined)[]> {
  const asked = new Map<string, Promise<readonly MachineOffer[]>>();
  const signal = new AbortController().signal;
  return Promise.all(
    prepared.jobs.map((j, i) => {
      if (decisions[i]?.decision === 'cached') return undefined;
      const key = JSON.stringify(j.spec.resources);
      if (!asked.has(key)) asked.set(key, backend.offers!(j.spec, signal));
      return asked.get(key);
    }),
  );
}

/** `local`, or `KIND:NAME` for a remote (the default remote when none is named). */
async function backendIdOf(home: string, placement: PlacementChoice, workflow: string): Promise<string> {
  if (placement.kind === 'local') return 'local';
  const { registry } = await import('../../backends/index.js');
  try {
    return await registry.backendIdFor(home, placement.name ?? '');
  } catch (e) {
    // `resources.remote: true` asked for the default remote: say that this is where the request came from.
    if (placement.why !== 'workflow' || !(e instanceof DstackError)) throw e;
    throw new DstackError(e.code, `workflow \`${workflow}\` asks to run remotely (\`resources.remote: true\`), but ${e.message}`, e.hint ? { hint: e.hint } : {});
  }
}
