/**
 * `${{ … }}` templates in workflow strings. Resolved when a job is resolved (the values depend on
 * the command line), except secrets, which become `secretMarker(NAME)` and are only read when a
 * container starts. A single `$` (`$PORT_0`, `$HOME`) is left alone for the shell; `$$` is a literal `$`.
 */
import { DstackError, type SourceLocation } from '../errors.js';
import { secretMarker } from '../types.js';
import { didYouMean, sourceLines, suggestion } from './source.js';

export interface InterpolationScope {
  readonly variables: Readonly<Record<string, string>>;
  readonly runName: string;
  /** `${{ run.args }}`: the leftover arguments, already quoted for the shell and joined. */
  readonly runArgs: string;
  /** Collects the names of the variables read, when given. */
  readonly used?: Set<string>;
}

/** Where a template came from, for errors. */
export interface TemplateOrigin {
  readonly root: string;
  readonly workflow: string;
  /** The field path as in `WorkflowSpec.fieldLocations` (`commands.0`). */
  readonly field: string;
  readonly location?: SourceLocation;
}

const VAR = '[A-Za-z_][A-Za-z0-9_-]*';
const SECRET = '[A-Za-z_][A-Za-z0-9_]*';

export function interpolate(template: string, scope: InterpolationScope, origin: TemplateOrigin): string {
  if (!template.includes('$')) return template;
  let out = '';
  for (let i = 0; i < template.length; ) {
    if (template.startsWith('$$', i)) {
      out += '$';
      i += 2;
    } else if (template.startsWith('${{', i)) {
      const end = template.indexOf('}}', i + 3);
      if (end < 0) throw templateError('DS0003', `unterminated \`\${{\` in ${display(origin)}`, template.slice(i), origin, 'close it with `}}`');
      out += evaluate(template.slice(i + 3, end).trim(), template.slice(i, end + 2), scope, origin);
      i = end + 2;
    } else {
      out += template[i];
      i += 1;
    }
  }
  return out;
}

function evaluate(expr: string, raw: string, scope: InterpolationScope, origin: TemplateOrigin): string {
  let m: RegExpExecArray | null;
  if (expr === 'run.name') return scope.runName;
  if (expr === 'run.args') return scope.runArgs;
  if ((m = new RegExp(`^secrets\\.(${SECRET})$`).exec(expr))) return secretMarker(m[1]!);
  if ((m = new RegExp(`^(?:variables\\.)?(${VAR})$`).exec(expr))) {
    const name = m[1]!;
    if (Object.hasOwn(scope.variables, name)) {
      scope.used?.add(name);
      return scope.variables[name]!;
    }
    const best = didYouMean(name, Object.keys(scope.variables));
    throw templateError('DS0008', `unknown variable \`${name}\` in ${display(origin)}${suggestion(best)}`, raw, origin,
      `declare it in .dstack/variables.yaml under \`global:\` or \`${origin.workflow}:\``);
  }
  const known = ['run.name', 'run.args', ...Object.keys(scope.variables).map((v) => `variables.${v}`)];
  throw templateError('DS0008', `unknown name \`${expr}\` in ${display(origin)}${suggestion(didYouMean(expr, known))}`, raw, origin,
    'expected variables.NAME (or just NAME), run.name, run.args or secrets.NAME');
}

const display = (o: TemplateOrigin): string =>
  `\`${o.field.replace(/\.(\d+)$/, '[$1]')}\` of workflow \`${o.workflow}\``;

/**
 * The error points at the `${{` itself: the field's location says where its value starts, and the
 * placeholder is found in the source from there (a block scalar's later lines included).
 */
function templateError(code: 'DS0003' | 'DS0008', message: string, raw: string, origin: TemplateOrigin, hint: string): DstackError {
  const loc = origin.location;
  if (!loc) return new DstackError(code, message, { hint });
  const lines = sourceLines(origin.root, loc.file);
  if (!lines) return new DstackError(code, message, { location: loc, hint });
  // A value spans few lines (a block scalar's lines have their own locations); look no further.
  for (let line = loc.line; line <= Math.min(lines.length, loc.line + 3); line++) {
    const text = lines[line - 1]!;
    const col = text.indexOf(raw, line === loc.line ? loc.col - 1 : 0);
    if (col >= 0) return new DstackError(code, message, { location: { ...loc, line, col: col + 1 }, lineText: text, hint });
  }
  return new DstackError(code, message, { location: loc, lineText: lines[loc.line - 1], hint });
}
