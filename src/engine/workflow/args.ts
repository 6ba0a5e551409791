/**
 * Command-line overrides of variables: `dstack run train --epochs 10` sets the declared variable
 * `epochs`; everything else is left for `${{ run.args }}`, in order.
 */
import { DstackError } from '../errors.js';
import type { Project } from '../types.js';

/**
 * `--NAME VALUE` and `--NAME=VALUE` set a declared variable; undeclared flags and positionals go to
 * `args`. A bare `--` ends the overrides: what follows goes to `args` as is (the `--` itself is dropped),
 * so `dstack run train -- --epochs 3` hands `--epochs 3` to the script.
 */
export function parseRunArgs(
  tokens: readonly string[],
  declared: ReadonlySet<string>,
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
      args.push(tok);
    } else if (m[2] !== undefined) {
      overrides[m[1]!] = m[2];
    } else if (i + 1 < tokens.length) {
      overrides[m[1]!] = tokens[++i]!;
    } else {
      throw new DstackError('DS0100', `--${m[1]} needs a value`, { hint: `e.g. --${m[1]} VALUE or --${m[1]}=VALUE` });
    }
  }
  return { overrides, args };
}

/** The variables the command line may set for a run of these workflows: `global` plus each one's own. */
export function declaredVariables(project: Project, workflows: readonly string[]): Set<string> {
  const names = new Set(Object.keys(project.variables.global));
  for (const wf of workflows) for (const name of Object.keys(project.variables.perWorkflow[wf] ?? {})) names.add(name);
  return names;
}
