/**
 * Problems found while loading a project, as data (types.ts `Diagnostic`) that the parsed-project
 * cache can keep, and the two ways back: a DstackError to render, and which workflows a problem
 * takes down. Issue 12: a workflow's error stays with that workflow; the planner refuses a run only
 * for the errors of the workflows it would run, and the CLI shows the rest as warnings.
 */
import { DstackError } from './errors.js';
import type { Diagnostic, DiagnosticScope, Project } from './types.js';

export function toDiagnostic(e: DstackError, scope: DiagnosticScope, severity: Diagnostic['severity'] = 'error'): Diagnostic {
  return {
    severity,
    scope,
    code: e.code,
    message: e.message,
    ...(e.location ? { location: e.location } : {}),
    ...(e.lineText !== undefined ? { lineText: e.lineText } : {}),
    ...(e.hint !== undefined ? { hint: e.hint } : {}),
  };
}

export function toError(d: Diagnostic): DstackError {
  return new DstackError(d.code, d.message, {
    ...(d.location ? { location: d.location } : {}),
    ...(d.lineText !== undefined ? { lineText: d.lineText } : {}),
    ...(d.hint !== undefined ? { hint: d.hint } : {}),
  });
}

export const workflowScope = (...names: string[]): DiagnosticScope => ({ kind: 'workflows', names });

/** The diagnostics of a project, looked up by what they take down. */
export interface DiagnosticIndex {
  /** By workflow name: those scoped to it, and those of an unreadable file it was made out in. */
  readonly byWorkflow: ReadonlyMap<string, readonly Diagnostic[]>;
  /** Files that could not be read at all: their workflows are unknown. */
  readonly unreadable: readonly Diagnostic[];
  /** Errors that block every run. */
  readonly projectErrors: readonly Diagnostic[];
}

const EMPTY: DiagnosticIndex = { byWorkflow: new Map(), unreadable: [], projectErrors: [] };

export function indexDiagnostics(project: Pick<Project, 'diagnostics'>): DiagnosticIndex {
  if (project.diagnostics.length === 0) return EMPTY;
  const byWorkflow = new Map<string, Diagnostic[]>();
  const unreadable: Diagnostic[] = [];
  const projectErrors: Diagnostic[] = [];
  const add = (name: string, d: Diagnostic): void => {
    const list = byWorkflow.get(name);
    if (!list) byWorkflow.set(name, [d]);
    else if (!list.includes(d)) list.push(d);
  };
  for (const d of project.diagnostics) {
    const s = d.scope;
    if (s.kind === 'workflows') for (const n of s.names) add(n, d);
    else if (s.kind === 'file') {
      unreadable.push(d);
      for (const n of s.workflows) add(n, d);
    } else if (s.kind === 'project' && d.severity === 'error') projectErrors.push(d);
  }
  return { byWorkflow, unreadable, projectErrors };
}

export const hasErrors = (ds: readonly Diagnostic[] | undefined): boolean => ds !== undefined && ds.some((d) => d.severity === 'error');

/** One line for a diagnostic: `file:line:col DS0010 message`, for lists where the full form is too much. */
export function briefly(d: Diagnostic): string {
  const where = d.location ? `${d.location.file}:${d.location.line}:${d.location.col} ` : '';
  return `${where}${d.code} ${d.message}`;
}
