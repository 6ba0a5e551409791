/**
 * Command-line overrides of variables: `dstack run train --epochs 10` sets the declared variable
 * `epochs`; everything else is left for `${{ run.args }}`, in order — the named workflow's only
 * (submit.ts). A flag one edit away from a declared variable or a dstack flag (`--sede 7` for
 * `seed`, `--dryrun`) is refused with a "did you mean" instead of silently becoming an argument
 * (issue 8). To hand such an argument to the workflow on purpose, put it after `--`.
 */
import { DstackError } from '../errors.js';
import type { Project } from '../types.js';

/**
 * `--NAME VALUE` and `--NAME=VALUE` set a declared variable; undeclared flags and positionals go to
 * `args`. A bare `--` ends the overrides: what follows goes to `args` as is (the `--` itself is dropped),
 * so `dstack run train -- --epochs 3` hands `--epochs 3` to the script. `reserved` are dstack's own
 * flags (`--dry-run`), for "did you mean" only: the command line parser has taken them already.
 */
export function parseRunArgs(
  tokens: readonly string[],
  declared: ReadonlySet<string>,
  reserved: readonly string[] = [],
): { overrides: Record<string, string>; args: string[] } {
  const overrides: Record<string, string> = {};
  const args: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i]!;
    if (tok === '--') {
      args.push(...tokens.slice(i + 1));
      break;
    }
    const m = /^--([^=]+)(?:=(.*))?$/s.exec(tok);
    if (!m || !declared.has(m[1]!)) {
      if (m) refuseNearMiss(m[1]!, declared, reserved);
      args.push(tok);
    } else if (m[2] !== undefined) {
      setOwn(overrides, m[1]!, m[2]);
    } else if (i + 1 < tokens.length) {
      setOwn(overrides, m[1]!, tokens[++i]!);
    } else {
      throw new DstackError('DS0100', `--${m[1]} needs a value`, { hint: `e.g. --${m[1]} VALUE or --${m[1]}=VALUE` });
    }
  }
  return { overrides, args };
}

/** Sets an own property, whatever the name (`__proto__` included): names come from the command line. */
function setOwn(o: Record<string, string>, key: string, value: string): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

function refuseNearMiss(name: string, declared: ReadonlySet<string>, reserved: readonly string[]): void {
  const variable = [...declared].find((v) => oneEditApart(name, v));
  const flag = variable === undefined ? reserved.find((f) => f.startsWith('--') && oneEditApart(`--${name}`, f)) : undefined;
  if (variable === undefined && flag === undefined) return;
  const meant = variable !== undefined ? `--${variable}` : flag!;
  const what = variable !== undefined ? `the variable \`${variable}\`` : `dstack's flag \`${flag}\``;
  throw new DstackError('DS0024', `unknown argument \`--${name}\`; did you mean \`${meant}\` (${what})?`, {
    hint: `to pass \`--${name}\` to the workflow as it is, put it after \`--\`: dstack run WORKFLOW -- --${name} …`,
  });
}

/**
 * Whether `a` becomes `b` by one edit: a letter changed, added or removed, or two neighbours
 * swapped (`sede`/`seed`: the commonest typo, which plain Levenshtein counts as two).
 */
export function oneEditApart(a: string, b: string): boolean {
  if (a === b) return false;
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (a.length === b.length) {
    if (a.slice(i + 1) === b.slice(i + 1)) return true; // one substitution
    return a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2); // one swap
  }
  const [longer, shorter] = a.length > b.length ? [a, b] : [b, a];
  return longer.slice(i + 1) === shorter.slice(i);
}

/** The variables the command line may set for a run of these workflows: `global` plus each one's own. */
export function declaredVariables(project: Project, workflows: readonly string[]): Set<string> {
  const names = new Set(Object.keys(project.variables.global));
  for (const wf of workflows) {
    if (!Object.hasOwn(project.variables.perWorkflow, wf)) continue;
    for (const name of Object.keys(project.variables.perWorkflow[wf]!)) names.add(name);
  }
  return names;
}
