/**
 * The shape of the YAML files, checked with typanion before anything is converted. Exact-key
 * `isObject` makes unknown fields errors; `kind()` dispatches on the YAML node's kind (string, list,
 * mapping…) so a union such as "a path or `{path, mount}`" reports the error of the branch the user
 * meant rather than typanion's "matched none of". Semantic checks (sizes, paths, providers) happen
 * in convert.ts on the already well-shaped nodes.
 */
import * as t from 'typanion';

type V = t.AnyStrictValidator;
type Kind = 'string' | 'number' | 'boolean' | 'array' | 'object';

/** The message a missing required value gets; mapped to DS0004 by `typanionErrors`. */
export const MISSING = 'missing required field';

const push = (state: t.ValidationState | undefined, message: string): false => {
  state?.errors?.push(`${state.p ?? '.'}: ${message}`);
  return false;
};

export const printable = (v: unknown): string => {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return JSON.stringify(v);
};

const kindOf = (v: unknown): Kind | undefined => {
  if (Array.isArray(v)) return 'array';
  if (v !== null && typeof v === 'object') return 'object';
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v === v ? typeof v as Kind : undefined;
  return undefined;
};

const any: V = t.isUnknown();

/** Accepts the kinds listed, each checked further by its own validator; anything else is "expected …". */
function kind(expected: string, branches: Partial<Record<Kind, V>>): V {
  return t.makeValidator<unknown, unknown>({
    test: (value, state): value is unknown => {
      if (value === undefined) return push(state, MISSING);
      const k = kindOf(value);
      const branch = k && branches[k];
      if (!branch) return push(state, `Expected ${expected} (got ${printable(value)})`);
      return branch(value, state);
    },
  });
}

/** Optional, and an empty value (`artifacts:` with nothing after it) counts as absent. */
const opt = (v: V): V => t.isOptional(t.isNullable(v));

const check = (expected: string, ok: (v: never) => boolean): V =>
  t.makeValidator<unknown, unknown>({
    test: (value, state): value is unknown => ok(value as never) || push(state, `Expected ${expected} (got ${printable(value)})`),
  });

const str = kind('a string', { string: any });
/** Scalars whose source text is kept: `python: 3.10`, `- true` as a shell command, `env: {N: 1}`. */
const text = kind('a string', { string: any, number: any, boolean: any });
const lines = kind('a list of strings or a multi-line string', { string: any, array: t.isArray(text) });
const bool = kind('true or false', { boolean: any });
const count = kind('a whole number', { number: check('a whole number ≥ 0', (n: number) => Number.isInteger(n) && n >= 0) });
const size = kind('a size such as 16GB', { string: any, number: any });
const list = (item: V, what: string): V => kind(what, { array: t.isArray(item) });

export const depProps = { workflow: opt(text), tag: opt(text) };
export const artifactProps = { path: text, mount: opt(bool) };
export const cacheProps = { path: text };
export const gpuProps = { count: opt(count), name: opt(text), memory: opt(size) };
export const resourceProps = {
  cpu: opt(kind('a number of CPUs', { number: check('a number of CPUs > 0', (n: number) => n > 0) })),
  memory: opt(size),
  gpu: opt(kind('a GPU count or `{count, name, memory}`', { number: count, object: t.isObject(gpuProps) })),
  shm_size: opt(size),
  interruptible: opt(bool),
  // dstack 0.7: where the workflow runs (see placement.ts).
  local: opt(bool),
  remote: opt(bool),
};
export const registryAuthProps = { username: text, password: text };

export const workflowProps = {
  name: opt(text),
  help: opt(text),
  provider: opt(text),
  image: opt(str),
  entrypoint: opt(kind('a command line or a list of strings', { string: any, array: t.isArray(text) })),
  commands: opt(lines),
  setup: opt(lines),
  deps: opt(list(kind('`workflow: NAME`, `tag: NAME`, `NAME` or `:TAG`', { string: any, object: t.isObject(depProps) }), 'a list of deps')),
  artifacts: opt(list(kind('a path or `path: …`', { string: any, object: t.isObject(artifactProps) }), 'a list of paths')),
  cache: opt(list(kind('a path or `path: …`', { string: any, object: t.isObject(cacheProps) }), 'a list of paths')),
  env: opt(kind('a list of `NAME=VALUE` or a mapping', { array: t.isArray(text), object: t.isRecord(t.isNullable(text)) })),
  ports: opt(kind('a number of ports', { number: count, array: any })),
  retry: opt(count),
  working_dir: opt(str),
  python: opt(text),
  inputs: opt(list(str, 'a list of paths')),
  resources: opt(kind('a mapping', { object: t.isObject(resourceProps) })),
  registry_auth: opt(kind('a mapping with `username` and `password`', { object: t.isObject(registryAuthProps) })),
};

export const workflowItem = kind('a workflow (a mapping with `name`, `commands`, …)', { object: t.isObject(workflowProps) });

export const workflowsFile = kind('a mapping with a `workflows:` list', {
  object: t.isObject({ workflows: opt(list(any, 'a list of workflows')) }),
});

export const variablesFile = kind('a mapping with a `variables:` mapping', {
  object: t.isObject({
    variables: opt(kind('a mapping of `global` and workflow names to variables', {
      object: t.isRecord(t.isNullable(kind('a mapping of variable names to values', {
        object: t.isRecord(t.isNullable(kind('a string or number', { string: any, number: any, boolean: any }))),
      }))),
    })),
  }),
});

/**
 * Known keys of each mapping, by path with list indexes dropped (`artifacts[]`), for "did you mean"
 * on an unknown field.
 */
export const KNOWN_KEYS: Readonly<Record<string, readonly string[]>> = {
  '': Object.keys(workflowProps),
  resources: Object.keys(resourceProps),
  'resources.gpu': Object.keys(gpuProps),
  registry_auth: Object.keys(registryAuthProps),
  'artifacts[]': Object.keys(artifactProps),
  'cache[]': Object.keys(cacheProps),
  'deps[]': Object.keys(depProps),
};
