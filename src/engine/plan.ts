/**
 * The DAG of a run: the target and, transitively, the workflows it depends on, in a deterministic
 * topological order (deps first, in the order they are written; the target last). Tag deps are
 * not jobs; they are listed per job for the executor to pin.
 *
 * A run is refused only for problems of the workflows it would run (issue 12): the loader's
 * diagnostics of the target and its deps become the error; everything else found in the project is
 * handed back as notices for the CLI to show. The walk keeps its own stack (no recursion), so a
 * chain of thousands of workflows plans like a short one (issue 8).
 */
import { hasErrors, indexDiagnostics, toError, type DiagnosticIndex } from './diagnostics.js';
import { DstackError, DstackErrors, type SourceLocation } from './errors.js';
import type { DepSpec, Diagnostic, Project, WorkflowSpec } from './types.js';
import { didYouMean, formatLocation, lineTextAt, shown, suggestion } from './workflow/source.js';

export interface PlannedJob {
  readonly workflow: WorkflowSpec;
  /** Indexes into `Plan.jobs`, each smaller than this job's own. */
  readonly deps: readonly number[];
  /** Tags it pins, and deps on another repository (by `externalKey`): artifact sets, not jobs. */
  readonly tagDeps: readonly string[];
}

/**
 * A dep on another repository, as dstack 0.7 wrote it: `workflow: owner/repo/name` (the artifacts
 * of that repository's last successful run of `name`) or `tag: owner/repo/name`. Resolved through the
 * team bucket, never a job of this run.
 */
export const isExternalDep = (dep: DepSpec): boolean => dep.name.includes('/');
/** How an external dep is named among the pinned artifact sets: `workflow:acme/data/prep`. */
export const externalKey = (dep: DepSpec): string => `${dep.kind}:${dep.name}`;
/** The name a dep's artifact set is pinned under (a tag's own name, an external dep's key). */
export const pinnedName = (dep: DepSpec): string => (isExternalDep(dep) ? externalKey(dep) : dep.name);

export interface PlanNotices {
  /** Warnings about the workflows of the plan: shown in full. */
  readonly inPlan: readonly Diagnostic[];
  /** Everything found elsewhere in the project (errors of workflows this run does not need): shown briefly. */
  readonly elsewhere: readonly Diagnostic[];
}

export interface Plan {
  readonly jobs: readonly PlannedJob[];
  readonly notices: PlanNotices;
}

/** Where `--dep` values are said to come from (they have no line in a file). */
export const COMMAND_LINE: SourceLocation = { file: '<command line>', line: 1, col: 1 };

/** A `--dep` value: `NAME` (a workflow) or `:TAG`. */
export function parseDepFlag(value: string): DepSpec {
  return value.startsWith(':')
    ? { kind: 'tag', name: value.slice(1), location: COMMAND_LINE }
    : { kind: 'workflow', name: value, location: COMMAND_LINE };
}

export interface Edge {
  readonly from: string;
  readonly to: string;
  readonly location: SourceLocation;
}

const fromCommandLine = (loc: SourceLocation): boolean => loc === COMMAND_LINE;

interface Frame {
  readonly name: string;
  readonly workflow: WorkflowSpec;
  readonly deps: readonly DepSpec[];
  next: number;
  readonly jobDeps: number[];
  readonly tagDeps: string[];
  /** The edge that led here (none for the target). */
  readonly via?: Edge;
}

export function planRun(project: Project, target: string, extraDeps: readonly string[] = []): Plan {
  const diags = indexDiagnostics(project);
  if (diags.projectErrors.length) throw errorsOf(diags.projectErrors);
  if (!project.workflows.has(target)) throw targetError(project, diags, target);

  const jobs: PlannedJob[] = [];
  const index = new Map<string, number>();
  const broken: string[] = [];
  const errors: Diagnostic[] = [];
  const path: Frame[] = [];
  const onPath = new Map<string, number>();
  const known = (): string[] => [...project.workflows.keys()].sort();

  /** Starts visiting `name`; false when it has errors (collected, not descended into). */
  const enter = (name: string, via?: Edge): boolean => {
    const own = diags.byWorkflow.get(name);
    if (hasErrors(own)) {
      broken.push(name);
      for (const d of own!) if (d.severity === 'error' && !errors.includes(d)) errors.push(d);
      return false;
    }
    const workflow = project.workflows.get(name)!;
    const extra = name === target ? extraDeps.map(parseDepFlag) : [];
    onPath.set(name, path.length);
    path.push({ name, workflow, deps: [...workflow.deps, ...extra], next: 0, jobDeps: [], tagDeps: [], ...(via ? { via } : {}) });
    return true;
  };

  enter(target);
  while (path.length) {
    const frame = path[path.length - 1]!;
    const dep = frame.deps[frame.next++];
    if (dep === undefined) {
      path.pop();
      onPath.delete(frame.name);
      jobs.push({ workflow: frame.workflow, deps: frame.jobDeps, tagDeps: frame.tagDeps });
      index.set(frame.name, jobs.length - 1);
      const parent = path[path.length - 1];
      if (parent && !parent.jobDeps.includes(jobs.length - 1)) parent.jobDeps.push(jobs.length - 1);
      continue;
    }
    if (dep.kind === 'tag' || isExternalDep(dep)) {
      if (!frame.tagDeps.includes(pinnedName(dep))) frame.tagDeps.push(pinnedName(dep));
      continue;
    }
    const done = index.get(dep.name);
    if (done !== undefined) {
      if (!frame.jobDeps.includes(done)) frame.jobDeps.push(done);
      continue;
    }
    if (broken.includes(dep.name)) continue;
    const edge: Edge = { from: frame.name, to: dep.name, location: dep.location };
    const at = onPath.get(dep.name);
    if (at !== undefined) throw cycleError(project.root, [...path.slice(at + 1).map((f) => f.via!), edge]);
    if (!project.workflows.has(dep.name) && !hasErrors(diags.byWorkflow.get(dep.name))) throw missingDep(project.root, frame.name, dep, known());
    enter(dep.name, edge);
  }

  if (errors.length) {
    const others = broken.filter((n) => n !== target);
    const all = errors.map(toError);
    if (others.length && !broken.includes(target)) all.push(depsHaveErrors(target, others));
    throw all.length === 1 ? all[0]! : new DstackErrors(all);
  }
  return { jobs, notices: notices(project, jobs) };
}

/** The plan's warnings, and what the rest of the project has (shown, never blocking). */
function notices(project: Project, jobs: readonly PlannedJob[]): PlanNotices {
  if (project.diagnostics.length === 0) return { inPlan: [], elsewhere: [] };
  const names = new Set(jobs.map((j) => j.workflow.name));
  const inPlan: Diagnostic[] = [];
  const elsewhere: Diagnostic[] = [];
  for (const d of project.diagnostics) {
    const touches = d.scope.kind === 'workflows' && d.scope.names.some((n) => names.has(n));
    (touches ? inPlan : elsewhere).push(d);
  }
  return { inPlan, elsewhere };
}

const errorsOf = (ds: readonly Diagnostic[]): DstackError => (ds.length === 1 ? toError(ds[0]!) : new DstackErrors(ds.map(toError)));

/** The target is not a workflow that loaded: its own errors, the files that could not be read, or unknown. */
function targetError(project: Project, diags: DiagnosticIndex, target: string): DstackError {
  const own = diags.byWorkflow.get(target);
  if (own?.length) return errorsOf(own);
  const known = [...project.workflows.keys()].sort();
  const unknown = new DstackError('DS0006', `unknown workflow \`${shown(target)}\`${suggestion(didYouMean(target, known))}`, {
    hint: !diags.unreadable.length
      ? knownHint(known)
      : known.length
        ? `it may be in a file that could not be read (above); ${knownHint(known)}`
        : 'it may be in a file that could not be read (above)',
  });
  return diags.unreadable.length ? new DstackErrors([...diags.unreadable.map(toError), unknown]) : unknown;
}

function depsHaveErrors(target: string, names: readonly string[]): DstackError {
  const list = names.map((n) => `\`${n}\``).join(', ');
  return new DstackError('DS0023', `workflow \`${target}\` cannot run: it depends on ${list}, which ${names.length > 1 ? 'have' : 'has'} errors (above)`, {
    hint: 'fix those, or run a workflow that does not need them',
  });
}

export const knownHint = (known: readonly string[]): string =>
  known.length === 0
    ? 'this project defines no workflows yet; add one to .dstack/workflows.yaml'
    : `workflows in this project: ${known.slice(0, 8).join(', ')}${known.length > 8 ? ', …' : ''}`;

export function missingDep(root: string, from: string, dep: DepSpec, known: readonly string[]): DstackError {
  const best = suggestion(didYouMean(dep.name, known));
  if (fromCommandLine(dep.location)) {
    return new DstackError('DS0006', `unknown workflow \`${shown(dep.name)}\` in --dep${best}`, { hint: knownHint(known) });
  }
  return new DstackError('DS0006', `workflow \`${shown(from)}\` depends on unknown workflow \`${shown(dep.name)}\`${best}`, {
    location: dep.location,
    lineText: lineTextAt(root, dep.location),
    hint: knownHint(known),
  });
}

export function cycleError(root: string, edges: readonly Edge[]): DstackError {
  const where = (loc: SourceLocation): string => (fromCommandLine(loc) ? '--dep' : formatLocation(loc));
  const list = edges.map((e) => `${e.from} → ${e.to} (${where(e.location)})`).join(', ');
  const first = edges.find((e) => !fromCommandLine(e.location));
  return new DstackError('DS0007', `dependency cycle: ${list}`, {
    ...(first ? { location: first.location, lineText: lineTextAt(root, first.location) } : {}),
    hint: 'remove one of these deps',
  });
}
