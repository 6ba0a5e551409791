/**
 * How the loader's diagnostics reach the terminal (issue 12). A run refused for its own workflows'
 * errors goes through the error path; this shows the rest: the plan's warnings in full (they are
 * about what runs now), problems elsewhere in the project in one line each, at most a few, and —
 * for `dstack run` with no workflow — the workflows that can run and those that cannot, with why.
 */
import { briefly, hasErrors, indexDiagnostics, toError } from '../engine/diagnostics.js';
import { DstackError, DstackErrors, formatError } from '../engine/errors.js';
import { planRun, type PlanNotices } from '../engine/plan.js';
import type { Project } from '../engine/types.js';

/** Lines of "elsewhere" shown before the rest is summed up. */
const MAX_ELSEWHERE = 8;

export function renderNotices(stderr: NodeJS.WritableStream, notices: PlanNotices): void {
  for (const d of notices.inPlan) stderr.write(`${formatError(toError(d), d.severity)}\n`);
  const elsewhere = notices.elsewhere;
  if (elsewhere.length === 0) return;
  const errors = elsewhere.filter((d) => d.severity === 'error').length;
  const what = errors === elsewhere.length ? `${plural(errors, 'error')}` : `${plural(elsewhere.length, 'problem')}`;
  const lines = [`warning: ${what} elsewhere in this project, in workflows this run does not need:`];
  for (const d of elsewhere.slice(0, MAX_ELSEWHERE)) lines.push(`  ${briefly(d)}`);
  if (elsewhere.length > MAX_ELSEWHERE) lines.push(`  … and ${elsewhere.length - MAX_ELSEWHERE} more`);
  lines.push('  (`dstack run` with no workflow lists what can run and what cannot)');
  stderr.write(`${lines.join('\n')}\n`);
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** `dstack run` with no workflow: a usage error listing the workflows that run, then those that cannot. */
export function whichWorkflow(project: Project): DstackError {
  const index = indexDiagnostics(project);
  const runnable: string[] = [];
  const broken: string[] = [];
  const names = new Set([...project.workflows.keys(), ...index.byWorkflow.keys()]);
  for (const name of names) {
    const wf = project.workflows.get(name);
    const own = index.byWorkflow.get(name);
    if (hasErrors(own)) {
      broken.push(`  ${name} — ${briefly(own!.find((d) => d.severity === 'error')!)}`);
      continue;
    }
    const why = planProblem(project, name);
    if (why) broken.push(`  ${name} — ${why}`);
    else runnable.push(`  ${name}${wf?.help ? ` — ${wf.help}` : ''}`);
  }
  const parts = [`which workflow? \`dstack run\` needs one of:`, ...(runnable.length ? runnable : ['  (none can run)'])];
  if (broken.length) parts.push('these cannot run:', ...broken);
  // A file nothing could be made out of: its workflows are unknown, so it is listed as it is.
  for (const d of index.unreadable) if (d.scope.kind === 'file' && d.scope.workflows.length === 0) parts.push(`  ${briefly(d)}`);
  return new DstackError('DS0100', parts.join('\n'), { hint: 'for example: dstack run NAME --dry-run --explain' });
}

/** Why a workflow without errors of its own cannot run (a dep that cannot), or undefined. */
function planProblem(project: Project, name: string): string | undefined {
  try {
    planRun(project, name);
    return undefined;
  } catch (e) {
    if (!(e instanceof DstackError)) throw e;
    const last = e instanceof DstackErrors ? e.errors[e.errors.length - 1]! : e;
    return `${last.code} ${last.message.replace(/ \(above\)$/, '')}`;
  }
}
