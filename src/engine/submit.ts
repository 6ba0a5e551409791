/**
 * From a command line to stored jobs: plan the DAG, split the leftover arguments into variable
 * overrides and `run.args`, resolve every job and the tags it pins, and record the run.
 *
 * `run.args` are the named workflow's alone: a dep gets none, so a dep that never reads them is
 * not re-run because they changed (issue 8). Variable overrides reach every job that declares the
 * variable (in `global:` or its own section), since that is what declaring one there means.
 */
import { DstackError } from './errors.js';
import { planRun, type Plan } from './plan.js';
import { resolveJob } from './resolve.js';
import type { JobRecord, RunRecord, RunWriter, TagReader, TagRecord } from './store/types.js';
import type { JobOverrides, JobSpec, Project, RepoInfo, RunName } from './types.js';
import { declaredVariables, parseRunArgs } from './workflow/args.js';

export interface SubmitRequest {
  readonly project: Project;
  readonly target: string;
  /** Everything after the workflow name that was not a dstack flag. */
  readonly tokens: readonly string[];
  /** dstack's own `dstack run` flags, so that a near miss (`--dryrun`) gets a "did you mean". */
  readonly reservedFlags?: readonly string[];
  readonly jobOverrides?: JobOverrides;
  /** `--retry N`: resubmissions of an interrupted job, for every job of the run. */
  readonly retry?: number;
  readonly hostEnv: Readonly<Record<string, string | undefined>>;
}

/** One job of the plan, resolved. */
export interface PlannedJobView {
  readonly workflow: string;
  readonly spec: JobSpec;
  /** Indexes into `PreparedRun.jobs`. */
  readonly deps: readonly number[];
}

export interface PreparedRun {
  readonly plan: Plan;
  readonly jobs: readonly PlannedJobView[];
  readonly args: readonly string[];
  readonly overrides: Readonly<Record<string, string>>;
  /** The tags `tag:` deps name, as they are now. */
  readonly tags: ReadonlyMap<string, TagRecord>;
}

/**
 * Plans without writing anything. `runName` is what `${{ run.name }}` resolves to (a placeholder
 * for `--dry-run`). Every job of the DAG is kept: whether a dep is reused is decided when it is
 * about to run, by its fingerprint (see executor.ts), since that needs its own deps' results.
 * `tag:` deps must name a known tag.
 */
export function prepareRun(store: { readonly tags: TagReader }, request: SubmitRequest, runName: string): PreparedRun {
  const { project, target } = request;
  const plan = planRun(project, target, request.jobOverrides?.deps);
  const declared = declaredVariables(
    project,
    plan.jobs.map((j) => j.workflow.name),
  );
  const { overrides, args } = parseRunArgs(request.tokens, declared, request.reservedFlags);

  const tags = new Map<string, TagRecord>();
  for (const job of plan.jobs) {
    for (const name of job.tagDeps) {
      if (tags.has(name)) continue;
      const tag = store.tags.getTag(name);
      if (!tag) {
        const dep = job.workflow.deps.find((d) => d.kind === 'tag' && d.name === name);
        throw new DstackError('DS0015', `workflow '${job.workflow.name}' depends on tag '${name}', which does not exist`, {
          ...(dep && dep.location.file !== '<command line>' ? { location: dep.location } : {}),
          hint: 'see the tags there are with `dstack tags list`',
        });
      }
      tags.set(name, tag);
    }
  }

  const targetIndex = plan.jobs.length - 1;
  const jobs = plan.jobs.map((job, i): PlannedJobView => ({
    workflow: job.workflow.name,
    spec: resolveJob(job.workflow, {
      project,
      runName,
      args: i === targetIndex ? args : [],
      overrides,
      hostEnv: request.hostEnv,
      jobOverrides: i === targetIndex ? request.jobOverrides : undefined,
      ...(request.retry !== undefined ? { retry: request.retry } : {}),
    }),
    deps: job.deps,
  }));
  return { plan, jobs, args, overrides, tags };
}

export interface CreateRunRequest extends SubmitRequest {
  readonly owner: string;
  readonly backend: string;
  readonly repo: RepoInfo;
  readonly pid: number;
  readonly hostname: string;
}

/** Plans and records the run: every job of the DAG, `submitted`. */
export function createRun(store: { readonly runs: RunWriter; readonly tags: TagReader }, request: CreateRunRequest): { run: RunRecord; jobs: readonly JobRecord[]; prepared: PreparedRun } {
  const name = store.runs.reserveName();
  return recordRun(store.runs, name, prepareRecordable(store, request, name), request);
}

/** `prepareRun`, refusing what can be planned but not run yet (artifacts outside /workflow). */
export function prepareRecordable(store: { readonly tags: TagReader }, request: SubmitRequest, name: RunName): PreparedRun {
  const prepared = prepareRun(store, request, name);
  return prepared;
}

/**
 * Records a run prepared under `name` (reserved with `runs.reserveName()`) by
 * `prepareRecordable`, for a caller that checks the plan against its backend between planning and
 * recording.
 */
export function recordRun(runs: RunWriter, name: RunName, prepared: PreparedRun, request: CreateRunRequest): { run: RunRecord; jobs: readonly JobRecord[]; prepared: PreparedRun } {
  const { run, jobs } = runs.createRun({
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
  return { run, jobs, prepared };
}
