/**
 * The DAG of a run: the target and, transitively, the workflows it depends on, in a deterministic
 * topological order (deps first, in the order they are written; the target last). Tag deps are
 * not jobs; they are listed per job for the executor to pin.
 */
import { DstackError, type SourceLocation } from './errors.js';
import type { DepSpec, Project, WorkflowSpec } from './types.js';
import { didYouMean, formatLocation, lineTextAt, suggestion } from './workflow/source.js';

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

export interface Plan {
  readonly jobs: readonly PlannedJob[];
}

/** Where `--dep` values are said to come from (they have no line in a file). */
export const COMMAND_LINE: SourceLocation = { file: '<command line>', line: 1, col: 1 };

/** A `--dep` value: `NAME` (a workflow) or `:TAG`. */
export function parseDepFlag(value: string): DepSpec {
  return value.startsWith(':')
    ? { kind: 'tag', name: value.slice(1), location: COMMAND_LINE }
    : { kind: 'workflow', name: value, location: COMMAND_LINE };
}

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly location: SourceLocation;
}

const fromCommandLine = (loc: SourceLocation): boolean => loc === COMMAND_LINE;

export function planRun(project: Project, target: string, extraDeps: readonly string[] = []): Plan {
  const known = [...project.workflows.keys()].sort();
  if (!project.workflows.has(target)) {
    throw new DstackError('DS0006', `unknown workflow \`${target}\`${suggestion(didYouMean(target, known))}`, {
      hint: knownHint(known),
    });
  }
  const jobs: PlannedJob[] = [];
  const index = new Map<string, number>();
  // The path being visited, with the edge that led to each entry (none for the target).
  const stack: { name: string; via?: Edge }[] = [];

  const visit = (name: string, via?: Edge): number => {
    const done = index.get(name);
    if (done !== undefined) return done;
    const onStack = stack.findIndex((s) => s.name === name);
    if (onStack >= 0 && via) throw cycleError(project.root, [...stack.slice(onStack + 1).map((s) => s.via!), via]);
    const workflow = project.workflows.get(name)!;
    stack.push(via ? { name, via } : { name });
    const deps: number[] = [];
    const tagDeps: string[] = [];
    const extra = name === target ? extraDeps.map(parseDepFlag) : [];
    for (const dep of [...workflow.deps, ...extra]) {
      if (dep.kind === 'tag' || isExternalDep(dep)) {
        if (!tagDeps.includes(pinnedName(dep))) tagDeps.push(pinnedName(dep));
        continue;
      }
      if (!project.workflows.has(dep.name)) throw missingDep(project.root, name, dep, known);
      const i = visit(dep.name, { from: name, to: dep.name, location: dep.location });
      if (!deps.includes(i)) deps.push(i);
    }
    stack.pop();
    jobs.push({ workflow, deps, tagDeps });
    index.set(name, jobs.length - 1);
    return jobs.length - 1;
  };
  visit(target);
  return { jobs };
}

const knownHint = (known: readonly string[]): string =>
  known.length === 0
    ? 'this project defines no workflows yet; add one to .dstack/workflows.yaml'
    : `workflows in this project: ${known.slice(0, 8).join(', ')}${known.length > 8 ? ', …' : ''}`;

function missingDep(root: string, from: string, dep: DepSpec, known: readonly string[]): DstackError {
  const best = suggestion(didYouMean(dep.name, known));
  if (fromCommandLine(dep.location)) {
    return new DstackError('DS0006', `unknown workflow \`${dep.name}\` in --dep${best}`, { hint: knownHint(known) });
  }
  return new DstackError('DS0006', `workflow \`${from}\` depends on unknown workflow \`${dep.name}\`${best}`, {
    location: dep.location,
    lineText: lineTextAt(root, dep.location),
    hint: knownHint(known),
  });
}

function cycleError(root: string, edges: readonly Edge[]): DstackError {
  const where = (loc: SourceLocation): string => (fromCommandLine(loc) ? '--dep' : formatLocation(loc));
  const list = edges.map((e) => `${e.from} → ${e.to} (${where(e.location)})`).join(', ');
  const first = edges.find((e) => !fromCommandLine(e.location));
  return new DstackError('DS0007', `dependency cycle: ${list}`, {
    ...(first ? { location: first.location, lineText: lineTextAt(root, first.location) } : {}),
    hint: 'remove one of these deps',
  });
}
