/**
 * A planned workflow becomes a JobSpec: templates interpolated (secrets left as markers), the image
 * and the container command chosen, command-line overrides applied. Pure: no I/O except reading a
 * source line again when an error needs it.
 */
import { DstackError } from './errors.js';
import { insideRelative } from './paths.js';
import { parseDepFlag } from './plan.js';
import type { ArtifactSpec, GpuSpec, JobOverrides, JobSpec, Project, Resources, WorkflowSpec } from './types.js';
import { interpolate, type InterpolationScope } from './workflow/interpolate.js';
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
  const defaults = { ...project.variables.global, ...project.variables.perWorkflow[workflow.name] };
  const variables: Record<string, string> = { ...defaults };
  // Only declared variables can be overridden; parseRunArgs already sent the rest to run.args.
  for (const [k, v] of Object.entries(ctx.overrides)) if (Object.hasOwn(defaults, k)) variables[k] = v;
  const scope: InterpolationScope = { variables, runName: ctx.runName, runArgs: ctx.args.map(shellQuote).join(' ') };
  const interp = (text: string, field: string): string =>
    interpolate(text, scope, { root: project.root, workflow: workflow.name, field, location: workflow.fieldLocations.get(field) });
  const all = (list: readonly string[], field: string): string[] => list.map((s, i) => interp(s, `${field}.${i}`));
  const relPath = (raw: string, field: string, what: string): string => {
    const p = insideRelative(raw);
    if (p === undefined) throw pathError(project.root, `${what} \`${raw}\` of workflow \`${workflow.name}\` leaves the working directory`, workflow, field);
    return p;
  };

  const setup = all(workflow.setup, 'setup');
  const commands = all(workflow.commands, 'commands');
  const python = workflow.python === undefined ? undefined : interp(workflow.python, 'python');
  let image: string;
  if (workflow.image !== undefined) image = interp(workflow.image, 'image');
  else if (workflow.provider === 'bash') image = `python:${python ?? DEFAULT_PYTHON}-slim`;
  else {
    // Caught when loading already; kept so that a hand-built WorkflowSpec cannot slip through.
    throw new DstackError('DS0004', `workflow \`${workflow.name}\` uses provider \`docker\` but has no \`image\``, {
      location: workflow.location,
      lineText: lineTextAt(project.root, workflow.location),
    });
  }

  const env: Record<string, string> = {};
  for (const e of workflow.env) {
    const value = e.value === undefined ? ctx.hostEnv[e.name] : interp(e.value, `env.${e.name}`);
    if (value !== undefined) env[e.name] = value;
  }

  const artifacts: ArtifactSpec[] = workflow.artifacts.map((a, i) => ({
    ...a,
    path: a.path.includes('$') ? relPath(interp(a.path, `artifacts.${i}`), `artifacts.${i}`, 'artifact path') : a.path,
  }));
  let workingDir = workflow.workingDir === undefined ? '' : relPath(interp(workflow.workingDir, 'working_dir'), 'working_dir', '`working_dir`');
  const inputs = workflow.inputs?.map((p, i) => (p.includes('$') ? relPath(interp(p, `inputs.${i}`), `inputs.${i}`, 'input path') : p));
  const registryAuth = workflow.registryAuth && {
    username: interp(workflow.registryAuth.username, 'registry_auth.username'),
    password: interp(workflow.registryAuth.password, 'registry_auth.password'),
  };

  let resources = workflow.resources;
  let deps = workflow.deps;
  const o = ctx.jobOverrides;
  if (o) {
    resources = overrideResources(resources, o);
    for (const entry of o.env ?? []) {
      const eq = entry.indexOf('=');
      const name = eq < 0 ? entry : entry.slice(0, eq);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw usage(`-e ${entry}: \`${name}\` is not a valid environment variable name`, 'e.g. -e KEY=VALUE or -e KEY');
      const value = eq < 0 ? ctx.hostEnv[name] : entry.slice(eq + 1);
      if (value !== undefined) env[name] = value;
    }
    for (const a of o.artifacts ?? []) {
      const path = insideRelative(a);
      if (path === undefined) throw new DstackError('DS0009', `artifact path \`${a}\` (from --artifact) leaves the working directory`, { hint: 'use a relative path inside the project, such as ./output' });
      if (!artifacts.some((x) => x.path === path)) artifacts.push({ path, mount: false });
    }
    if (o.workingDir !== undefined) {
      const wd = insideRelative(o.workingDir);
      if (wd === undefined) throw new DstackError('DS0009', `working dir \`${o.workingDir}\` (from --working-dir) leaves the working directory`, { hint: 'use a relative path inside the project' });
      workingDir = wd;
    }
    if (o.deps?.length) deps = [...deps, ...o.deps.map(parseDepFlag)];
  }

  return {
    workflow: workflow.name,
    provider: workflow.provider,
    image,
    ...containerCommand(workflow, setup, commands, (s, i) => interp(s, `entrypoint.${i}`)),
    env,
    workingDir,
    ports: workflow.ports,
    artifacts,
    cache: all(workflow.cache, 'cache'),
    ...(inputs ? { inputs } : {}),
    resources,
    ...(registryAuth ? { registryAuth } : {}),
    variables,
    args: [...ctx.args],
    deps,
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
  const memory = size(o.memory, '--memory');
  const shmSize = size(o.shmSize, '--shm-size');
  const gpuMemory = size(o.gpuMemory, '--gpu-memory');
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

const usage = (message: string, hint: string): DstackError => new DstackError('DS0100', message, { hint });

function pathError(root: string, message: string, wf: WorkflowSpec, field: string): DstackError {
  const location = wf.fieldLocations.get(field);
  return new DstackError('DS0009', message, {
    ...(location ? { location, lineText: lineTextAt(root, location) } : {}),
    hint: 'use a relative path inside the project',
  });
}
