/**
 * The checks that need the whole project, made once when it is loaded so every problem is known
 * (and cached) before anything runs: deps on workflows that do not exist, dependency cycles, and
 * each workflow resolved once with its default variables (unknown variables, unterminated
 * templates, an interpolated image name Docker would refuse). Each problem is scoped to the
 * workflows it takes down. Nothing here recurses: a chain of thousands of workflows is a loop.
 */
import { hasErrors, indexDiagnostics, toDiagnostic, workflowScope } from '../diagnostics.js';
import { DstackError } from '../errors.js';
import { cycleError, isExternalDep, missingDep, type Edge } from '../plan.js';
import { resolveJob } from '../resolve.js';
import type { DepSpec, Diagnostic, Project, WorkflowSpec } from '../types.js';

export function checkProject(project: Project, diagnostics: Diagnostic[]): void {
  const index = indexDiagnostics({ diagnostics });
  const known = [...project.workflows.keys()].sort();
  const exists = (name: string): boolean => project.workflows.has(name) || index.byWorkflow.has(name);
  for (const wf of project.workflows.values()) {
    for (const dep of wf.deps) {
      // A dep on another repository is resolved through the team bucket when the run is planned.
      if (dep.kind === 'workflow' && !isExternalDep(dep) && !exists(dep.name))
        diagnostics.push(toDiagnostic(missingDep(project.root, wf.name, dep, known), workflowScope(wf.name)));
    }
  }
  for (const cycle of findCycles(project.workflows)) {
    diagnostics.push(toDiagnostic(cycleError(project.root, cycle.edges), workflowScope(...cycle.members)));
  }
  // Resolving needs a workflow that is otherwise sound; its first error is enough to report.
  const now = indexDiagnostics({ diagnostics });
  for (const wf of project.workflows.values()) {
    if (hasErrors(now.byWorkflow.get(wf.name))) continue;
    try {
      resolveJob(wf, { project, runName: 'run-name', args: [], overrides: {}, hostEnv: {} });
    } catch (e) {
      if (!(e instanceof DstackError)) throw e;
      diagnostics.push(toDiagnostic(e, workflowScope(wf.name)));
    }
  }
}

const workflowDeps = (wf: WorkflowSpec, workflows: ReadonlyMap<string, WorkflowSpec>): DepSpec[] =>
  wf.deps.filter((d) => d.kind === 'workflow' && workflows.has(d.name));

/**
 * Every dependency cycle: the strongly connected components with more than one workflow, or one
 * that depends on itself (Tarjan's algorithm, with an explicit stack). Each is described by one
 * cycle through its first member in loading order, edge by edge, for the message.
 */
export function findCycles(workflows: ReadonlyMap<string, WorkflowSpec>): { members: string[]; edges: Edge[] }[] {
  const order = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: { members: string[]; edges: Edge[] }[] = [];
  const open = (name: string): { name: string; deps: DepSpec[]; next: number } => {
    order.set(name, order.size);
    low.set(name, order.size - 1);
    stack.push(name);
    onStack.add(name);
    return { name, deps: workflowDeps(workflows.get(name)!, workflows), next: 0 };
  };
  for (const start of workflows.keys()) {
    if (order.has(start)) continue;
    const calls = [open(start)];
    while (calls.length) {
      const top = calls[calls.length - 1]!;
      const dep = top.deps[top.next++];
      if (dep) {
        if (!order.has(dep.name)) calls.push(open(dep.name));
        else if (onStack.has(dep.name)) low.set(top.name, Math.min(low.get(top.name)!, order.get(dep.name)!));
        continue;
      }
      calls.pop();
      const parent = calls[calls.length - 1];
      if (parent) low.set(parent.name, Math.min(low.get(parent.name)!, low.get(top.name)!));
      if (low.get(top.name) !== order.get(top.name)) continue;
      const members: string[] = [];
      for (let m = stack.pop()!; ; m = stack.pop()!) {
        onStack.delete(m);
        members.push(m);
        if (m === top.name) break;
      }
      const selfLoop = members.length === 1 && workflows.get(members[0]!)!.deps.some((d) => d.kind === 'workflow' && d.name === members[0]);
      if (members.length > 1 || selfLoop) out.push(describe(members, workflows));
    }
  }
  return out;
}

/** The shortest cycle through the component's first member in loading order (breadth first). */
function describe(members: readonly string[], workflows: ReadonlyMap<string, WorkflowSpec>): { members: string[]; edges: Edge[] } {
  const inside = new Set(members);
  const names = [...workflows.keys()].filter((n) => inside.has(n));
  const start = names[0]!;
  const via = new Map<string, Edge>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const from = queue[i]!;
    for (const dep of workflows.get(from)!.deps) {
      if (dep.kind !== 'workflow' || !inside.has(dep.name)) continue;
      const edge = { from, to: dep.name, location: dep.location };
      if (dep.name === start) {
        const edges = [edge];
        for (let at = from; at !== start; at = via.get(at)!.from) edges.unshift(via.get(at)!);
        return { members: names, edges };
      }
      if (!via.has(dep.name)) {
        via.set(dep.name, edge);
        queue.push(dep.name);
      }
    }
  }
  throw new Error(`no cycle through ${start}`);
}
