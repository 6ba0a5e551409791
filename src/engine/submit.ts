/**
 * From a command line to stored jobs: plan the DAG, split the leftover arguments into variable
 * overrides and `run.args`, decide which deps are reused, resolve every job, and record the run.
 */
import { DstackError } from './errors.js';
import { planRun, type Plan } from './plan.js';
import { resolveJob } from './resolve.js';
import type { JobRecord, RunRecord, RunStore } from './store/types.js';
import type { JobOverrides, JobSpec, Project, RepoInfo } from './types.js';
import { declaredVariables, parseRunArgs } from './workflow/args.js';

export interface SubmitRequest {
  readonly project: Project;
  readonly target: string;
  /** Everything after the workflow name that was not a dstack flag. */
  readonly tokens: readonly string[];
  readonly jobOverrides?: JobOverrides;
  readonly hostEnv: Readonly<Record<string, string | undefined>>;
  /** `--rerun`: run every dep even when an earlier run could be reused. */
  readonly rerun?: boolean;
}

/** One job of the plan, resolved, with the earlier job it reuses if any. */
export interface PlannedJobView {
  readonly workflow: string;
  readonly spec: JobSpec;
  readonly deps: readonly number[];
  readonly reuse?: JobRecord;
}

export interface PreparedRun {
  readonly plan: Plan;
  readonly jobs: readonly PlannedJobView[];
  readonly args: readonly string[];
  readonly overrides: Readonly<Record<string, string>>;
}

/**
 * Plans without writing anything. `runName` is what `${{ run.name }}` resolves to (a placeholder
 * for `--dry-run`). A dep is reused when an earlier job of that workflow in this project ended
 * `done` — dstack 0.7's rule; exact fingerprints replace it (issue 3) behind the same `reuse` field.
 */
export function prepareRun(store: RunStore, request: SubmitRequest, runName: string): PreparedRun {
  const { project, target } = request;
  const plan = planRun(project, target, request.jobOverrides?.deps);
  const declared = declaredVariables(
    project,
    plan.jobs.map((j) => j.workflow.name),
  );
  const { overrides, args } = parseRunArgs(request.tokens, declared);

  for (const job of plan.jobs) {
    const tag = job.tagDeps[0];
    if (tag !== undefined) {
      throw new DstackError('DS0015', `workflow '${job.workflow.name}' depends on tag '${tag}', which is not known here`, {
        location: job.workflow.location,
        hint: 'tags arrive with `dstack tags add`; until then depend on a workflow',
      });
    }
  }

  // Walk from the target towards its deps: a reused dep's own deps are not needed at all.
  const targetIndex = plan.jobs.length - 1;
  const reuse = new Map<number, JobRecord>();
  const needed = new Set<number>();
  const visit = (i: number): void => {
    if (needed.has(i) || reuse.has(i)) return;
    const job = plan.jobs[i]!;
    if (i !== targetIndex && !request.rerun) {
      const previous = store.latestSuccessfulJob(job.workflow.name, project.root);
      if (previous?.manifest) {
        reuse.set(i, previous);
        return;
      }
    }
    needed.add(i);
    for (const d of job.deps) visit(d);
  };
  visit(targetIndex);

  const kept = plan.jobs.map((_, i) => i).filter((i) => needed.has(i) || reuse.has(i));
  const newIndex = new Map(kept.map((old, i) => [old, i] as const));
  const jobs = kept.map((i): PlannedJobView => {
    const job = plan.jobs[i]!;
    const spec = resolveJob(job.workflow, {
      project,
      runName,
      args,
      overrides,
      hostEnv: request.hostEnv,
      jobOverrides: i === targetIndex ? request.jobOverrides : undefined,
    });
    const prior = reuse.get(i);
    return {
      workflow: job.workflow.name,
      spec,
      deps: prior ? [] : job.deps.map((d) => newIndex.get(d)!),
      ...(prior ? { reuse: prior } : {}),
    };
  });
  return { plan, jobs, args, overrides };
}

export interface CreateRunRequest extends SubmitRequest {
  readonly owner: string;
  readonly backend: string;
  readonly repo: RepoInfo;
  readonly pid: number;
  readonly hostname: string;
}

/** Plans and records the run; reused deps are recorded as `done` jobs carrying the earlier manifest. */
export function createRun(store: RunStore, request: CreateRunRequest): { run: RunRecord; jobs: readonly JobRecord[]; prepared: PreparedRun } {
  const name = store.reserveName();
  const prepared = prepareRun(store, request, name);
  const { run, jobs } = store.createRun({
    name,
    workflow: request.target,
    owner: request.owner,
    backend: request.backend,
    repo: request.repo,
    args: prepared.args,
    pid: request.pid,
    hostname: request.hostname,
    jobs: prepared.jobs.map((j) => ({ spec: j.spec, deps: j.deps })),
  });
  prepared.jobs.forEach((p, i) => {
    const job = jobs[i]!;
    if (p.reuse?.manifest) {
      store.setJobManifest(job.id, p.reuse.manifest);
      store.setJobStatus(job.id, 'done', { exitCode: 0, reason: `reused ${p.reuse.id}` });
    }
  });
  return { run: store.getRun(name)!, jobs: store.jobs(name), prepared };
}
