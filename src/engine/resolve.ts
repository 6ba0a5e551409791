/**
 * A planned workflow becomes a JobSpec: templates interpolated (secrets left as markers), the image
 * and the container command chosen, command-line overrides applied. Pure: no I/O except reading a
 * source line again when an error needs it.
 */
import { DstackError, type ErrorCode } from './errors.js';
import { artifactPath, insideRelative } from './paths.js';
import { parseDepFlag } from './plan.js';
import { SECRET_MARKER_RE, type ArtifactSpec, type DepSpec, type GpuSpec, type JobOverrides, type JobSpec, type Project, type Resources, type WorkflowSpec } from './types.js';
import { imageReferenceProblem } from './workflow/image-ref.js';
import { DEFAULT_IMAGES, defaultImageFor } from './default-image.js';
import { interpolate, type InterpolationScope } from './workflow/interpolate.js';
import { LIMITS, outOfBounds, showBytes } from './workflow/limits.js';
import { shellQuote } from './workflow/shell.js';
import { lineTextAt } from './workflow/source.js';
import { SIZE_HINT, parseSize } from './workflow/units.js';

export interface ResolveContext {
  readonly project: Project;
  readonly runName: string;
  readonly args: readonly string[];
  readonly overrides: Readonly<Record<string, string>>;
  readonly hostEnv: Readonly<Record<string, string | undefined>>;
  readonly jobOverrides?: JobOverrides;
  /** `dstack run --retry N`: every job of the run, over the workflows' own `retry:`. */
  readonly retry?: number;
}

export const DEFAULT_PYTHON = '3.11';

/**
 * The bash provider runs the script with bash when the image has it (most do) and falls back to
 * `sh` (alpine, busybox); `-e` stops at the first failing command, as dstack 0.7 did. The script is
 * passed as `$1`, so nothing in it is ever re-parsed by the outer shell.
 */
export const BASH_BOOTSTRAP = 'if command -v bash >/dev/null 2>&1; then exec bash -e -c "$1"; fi; exec /bin/sh -e -c "$1"';

export function resolveJob(workflow: WorkflowSpec, ctx: ResolveContext): JobSpec {
  const { project } = ctx;
  const defaults = { ...project.variables.global, ...ownVariables(project, workflow.name) };
  const variables: Record<string, string> = { ...defaults };
  // Only declared variables can be overridden; parseRunArgs already sent the rest to run.args.
  for (const [k, v] of Object.entries(ctx.overrides)) if (Object.hasOwn(defaults, k)) variables[k] = v;
  const used = new Set<string>();
  const scope: InterpolationScope = { variables, runName: ctx.runName, runArgs: ctx.args.map(shellQuote).join(' '), used };
  const interp = (text: string, field: string): string =>
    interpolate(text, scope, { root: project.root, workflow: workflow.name, field, location: workflow.fieldLocations.get(field) });
  const all = (list: readonly string[], field: string): string[] => list.map((s, i) => interp(s, `${field}.${i}`));
  const relPath = (raw: string, field: string, what: string): string => {
    const p = insideRelative(raw);
    if (p === undefined) throw fieldError(project.root, 'DS0009', `${what} \`${raw}\` of workflow \`${workflow.name}\` leaves the working directory`, workflow, field, 'use a relative path inside the project');
    return p;
  };

  const setup = all(workflow.setup, 'setup');
  const commands = all(workflow.commands, 'commands');
  const python = workflow.python === undefined ? undefined : interp(workflow.python, 'python');

  const env: Record<string, string> = {};
  for (const e of workflow.env) {
    const value = e.value === undefined ? ctx.hostEnv[e.name] : interp(e.value, `env.${e.name}`);
    if (value !== undefined) env[e.name] = value;
  }

  const artifacts: ArtifactSpec[] = workflow.artifacts.map((a, i) => {
    if (!a.path.includes('$')) return a;
    const p = artifactPath(interp(a.path, `artifacts.${i}`));
    if ('error' in p) throw fieldError(project.root, 'DS0009', `artifact path \`${a.path}\` of workflow \`${workflow.name}\` ${p.error}`, workflow, `artifacts.${i}`, 'use a path inside the project, or an absolute one such as /opt/venv');
    return { path: p.path, mount: a.mount, ...(p.absolute ? { absolute: p.absolute } : {}) };
  });
  let workingDir = workflow.workingDir === undefined ? '' : relPath(interp(workflow.workingDir, 'working_dir'), 'working_dir', '`working_dir`');
  const inputs = workflow.inputs?.map((p, i) => (p.includes('$') ? relPath(interp(p, `inputs.${i}`), `inputs.${i}`, 'input path') : p));
  const registryAuth = workflow.registryAuth && {
    username: interp(workflow.registryAuth.username, 'registry_auth.username'),
    password: interp(workflow.registryAuth.password, 'registry_auth.password'),
  };

  const o = ctx.jobOverrides;
  const over = o ? applyOverrides(o, ctx.hostEnv, { resources: workflow.resources, env, artifacts, workingDir, deps: workflow.deps }) : undefined;
  const { resources, deps } = over ?? { resources: workflow.resources, deps: workflow.deps };
  if (over) workingDir = over.workingDir;
  const image = imageOf(workflow, project.root, python, (resources.gpu?.count ?? 0) > 0, (t) => interp(t, 'image'));

  return {
    workflow: workflow.name,
    provider: workflow.provider,
    image,
    ...(workflow.image === undefined ? { defaultImage: true as const } : {}),
    ...containerCommand(workflow, setup, commands, (s, i) => interp(s, `entrypoint.${i}`)),
    env,
    workingDir,
    ports: workflow.ports,
    ...retryOf(ctx.retry ?? workflow.retry),
    artifacts,
    cache: all(workflow.cache, 'cache'),
    ...(inputs ? { inputs } : {}),
    resources,
    ...(registryAuth ? { registryAuth } : {}),
    // Only the variables its templates read: an override of one it never reads changes nothing
    // it does, so it must not change its fingerprint either (issue 8: deps re-ran for nothing).
    variables: Object.fromEntries(Object.entries(variables).filter(([k]) => used.has(k))),
    args: [...ctx.args],
    deps,
  };
}

const retryOf = (n: number | undefined): { readonly retry?: number } => (n ? { retry: n } : {});

/** A workflow's own section of variables.yaml (an own property only: names are user input). */
const ownVariables = (project: Project, name: string): Readonly<Record<string, string>> | undefined =>
  Object.hasOwn(project.variables.perWorkflow, name) ? project.variables.perWorkflow[name] : undefined;

/** SECRET_MARKER_RE without its global flag, whose `lastIndex` would make `test` stateful. */
const HAS_SECRET = new RegExp(SECRET_MARKER_RE.source);

/**
 * The image, interpolated, checked against Docker's reference grammar (a name from a template or
 * `python:` is only known now) and never holding a secret: image names are stored and shown.
 */
function imageOf(workflow: WorkflowSpec, root: string, python: string | undefined, gpu: boolean, interp: (t: string) => string): string {
  if (workflow.image === undefined && workflow.provider !== 'bash') {
    // Caught when loading already; kept so that a hand-built WorkflowSpec cannot slip through.
    throw new DstackError('DS0004', `workflow \`${workflow.name}\` uses provider \`docker\` but has no \`image\``, {
      location: workflow.location,
      lineText: lineTextAt(root, workflow.location),
    });
  }
  const field = workflow.image !== undefined ? 'image' : 'python';
  const image = workflow.image !== undefined ? interp(workflow.image) : defaultImageFor(python ?? DEFAULT_PYTHON, gpu);
  if (image === undefined) {
    throw fieldError(root, 'DS0044', `\`python: ${python}\` of workflow \`${workflow.name}\` has no default image`, workflow, field,
      `give a version among ${Object.keys(DEFAULT_IMAGES).join(', ')}, or an image of your own with \`image:\` (e.g. python:${python}-slim)`);
  }
  if (HAS_SECRET.test(image))
    throw fieldError(root, 'DS0021', `\`image\` of workflow \`${workflow.name}\` reads a secret; image names are stored and shown, so they cannot hold one`, workflow, field,
      'put the registry credentials under `registry_auth:` (username and password may read secrets)');
  const problem = imageReferenceProblem(image);
  if (problem) {
    const what = field === 'python' ? `the default image for \`python: ${python}\`` : `image \`${image.length > 60 ? `${image.slice(0, 57)}…` : image}\``;
    throw fieldError(root, 'DS0020', `invalid ${what} of workflow \`${workflow.name}\`: ${problem}`, workflow, field,
      field === 'python' ? 'give a Python version such as 3.11' : undefined);
  }
  return image;
}

interface Overridable {
  readonly resources: Resources;
  /** Added to in place. */
  readonly env: Record<string, string>;
  /** Added to in place. */
  readonly artifacts: ArtifactSpec[];
  readonly workingDir: string;
  readonly deps: readonly DepSpec[];
}

/** The named workflow's command-line overrides (`--cpu`, `-e`, `-a`, `-w`, `--dep`). */
function applyOverrides(o: JobOverrides, hostEnv: ResolveContext['hostEnv'], job: Overridable): Omit<Overridable, 'env' | 'artifacts'> {
  for (const entry of o.env ?? []) {
    const eq = entry.indexOf('=');
    const name = eq < 0 ? entry : entry.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw usage(`-e ${entry}: \`${name}\` is not a valid environment variable name`, 'e.g. -e KEY=VALUE or -e KEY');
    const value = eq < 0 ? hostEnv[name] : entry.slice(eq + 1);
    if (value !== undefined) job.env[name] = value;
  }
  for (const a of o.artifacts ?? []) {
    const p = artifactPath(a);
    if ('error' in p) throw new DstackError('DS0009', `artifact path \`${a}\` (from --artifact) ${p.error}`, { hint: 'use a path inside the project, such as ./output' });
    if (!job.artifacts.some((x) => x.path === p.path)) job.artifacts.push({ path: p.path, mount: false, ...(p.absolute ? { absolute: p.absolute } : {}) });
  }
  let workingDir = job.workingDir;
  if (o.workingDir !== undefined) {
    const wd = insideRelative(o.workingDir);
    if (wd === undefined) throw new DstackError('DS0009', `working dir \`${o.workingDir}\` (from --working-dir) leaves the working directory`, { hint: 'use a relative path inside the project' });
    workingDir = wd;
  }
  return {
    resources: overrideResources(job.resources, o),
    workingDir,
    deps: o.deps?.length ? [...job.deps, ...o.deps.map(parseDepFlag)] : job.deps,
  };
}

function containerCommand(
  wf: WorkflowSpec,
  setup: readonly string[],
  commands: readonly string[],
  interpEntrypoint: (s: string, i: number) => string,
): Pick<JobSpec, 'command' | 'entrypoint'> {
  const lines = [...setup, ...commands];
  if (wf.provider === 'bash') return { command: ['/bin/sh', '-c', BASH_BOOTSTRAP, 'dstack', lines.join('\n')] };
  // docker: the image's own entrypoint unless one is given; commands become one shell line.
  const joined = lines.filter((l) => l.trim() !== '').join(' && ');
  if (wf.entrypoint) return { entrypoint: wf.entrypoint.map(interpEntrypoint), ...(joined ? { command: [joined] } : {}) };
  return joined ? { command: ['/bin/sh', '-c', joined] } : {};
}

function overrideResources(r: Resources, o: JobOverrides): Resources {
  const size = (text: string | undefined, flag: string): number | undefined => {
    if (text === undefined) return undefined;
    const bytes = parseSize(text);
    if (bytes === undefined) throw new DstackError('DS0011', `invalid size \`${text}\` for ${flag}`, { hint: SIZE_HINT });
    return bytes;
  };
  const memory = bounded(size(o.memory, '--memory'), '--memory', LIMITS.memory, showBytes);
  const shmSize = bounded(size(o.shmSize, '--shm-size'), '--shm-size', LIMITS.shmSize, showBytes);
  const gpuMemory = bounded(size(o.gpuMemory, '--gpu-memory'), '--gpu-memory', LIMITS.gpuMemory, showBytes);
  bounded(o.cpu, '--cpu', LIMITS.cpu);
  bounded(o.gpu, '--gpu', { min: 0, max: LIMITS.gpuCount });
  if (o.gpu !== undefined && !Number.isInteger(o.gpu)) throw new DstackError('DS0019', `--gpu ${o.gpu} is not a whole number of GPUs`, { hint: 'e.g. --gpu 1' });
  let gpu: GpuSpec | undefined = r.gpu;
  if (o.gpu !== undefined || o.gpuName !== undefined || gpuMemory !== undefined) {
    // `--gpu-name A100` alone asks for one such GPU unless the workflow already asks for more.
    gpu = {
      count: o.gpu ?? r.gpu?.count ?? 1,
      ...((o.gpuName ?? r.gpu?.name) !== undefined ? { name: (o.gpuName ?? r.gpu?.name)! } : {}),
      ...((gpuMemory ?? r.gpu?.memory) !== undefined ? { memory: (gpuMemory ?? r.gpu?.memory)! } : {}),
    };
  }
  return {
    ...r,
    ...(o.cpu !== undefined ? { cpu: o.cpu } : {}),
    ...(memory !== undefined ? { memory } : {}),
    ...(shmSize !== undefined ? { shmSize } : {}),
    ...(o.interruptible !== undefined ? { interruptible: o.interruptible } : {}),
    ...(gpu ? { gpu } : {}),
  };
}

/** A command-line value within its bounds (limits.ts), or a DS0019 error naming the flag. */
function bounded<T extends number | undefined>(value: T, flag: string, limits: { min: number; max: number }, show?: (n: number) => string): T {
  if (value === undefined) return value;
  const problem = outOfBounds(value, limits.min, limits.max, show);
  if (problem) throw new DstackError('DS0019', `${flag} ${show ? show(value) : value} is out of bounds: ${problem}`, { hint: `dstack run WORKFLOW ${flag} VALUE` });
  return value;
}

const usage = (message: string, hint: string): DstackError => new DstackError('DS0100', message, { hint });

function fieldError(root: string, code: ErrorCode, message: string, wf: WorkflowSpec, field: string, hint?: string): DstackError {
  const location = wf.fieldLocations.get(field);
  return new DstackError(code, message, {
    ...(location ? { location, lineText: lineTextAt(root, location) } : {}),
    ...(hint ? { hint } : {}),
  });
}
