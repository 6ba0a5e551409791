/**
 * Turns one workflow's YAML mapping (already shape-checked by schema.ts) into a WorkflowSpec,
 * reading scalars from their source text (`python: 3.10` stays "3.10") and recording where each
 * field was written. Errors here are about meaning: sizes, paths, providers, dstack 0.7 features
 * this dstack does not offer.
 */
import { posix } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, Scalar, type Document, type Node, type YAMLMap } from 'yaml';
import type { DstackError, ErrorCode, SourceLocation } from '../errors.js';
import { insideRelative } from '../paths.js';
import type { ArtifactSpec, DepSpec, GpuSpec, Provider, Resources, WorkflowSpec } from '../types.js';
import { nodeError } from './validate.js';
import { SIZE_HINT, parseSize } from './units.js';
import { splitShellWords } from './shell.js';
import type { SourceFile } from './source-file.js';
import { didYouMean, suggestion } from './source.js';

/** dstack 0.7 providers that start an interactive app; this dstack runs them as `bash` with `ports`. */
const NOT_OFFERED = ['code', 'lab', 'notebook', 'ssh', 'python', 'tensorboard', 'torchrun', 'streamlit', 'gradio', 'fastapi'];
const PROVIDERS: readonly Provider[] = ['bash', 'docker'];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

interface Ctx {
  readonly src: SourceFile;
  readonly doc: Document;
}

const deref = (ctx: Ctx, n: unknown): Node | undefined => {
  const v = isAlias(n) ? n.resolve(ctx.doc) : n;
  if (!v || typeof v !== 'object' || (isScalar(v) && v.value === null)) return undefined;
  return v as Node;
};

/** A field's value node; `key:` with nothing after it counts as absent. */
function get(ctx: Ctx, map: YAMLMap, key: string): Node | undefined {
  const pair = map.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
  return deref(ctx, pair?.value);
}

/** A scalar as the user wrote it: strings as parsed, numbers and booleans by their source text. */
export function scalarText(n: Node | undefined): string {
  if (!isScalar(n)) return '';
  if (typeof n.value === 'string') return n.value;
  return n.source ?? String(n.value);
}

const items = (ctx: Ctx, n: Node | undefined): Node[] =>
  isSeq(n) ? n.items.map((i) => deref(ctx, i)).filter((i): i is Node => i !== undefined) : [];

export function convertWorkflow(ctx: Ctx, map: YAMLMap): { spec?: WorkflowSpec; errors: DstackError[] } {
  const errors: DstackError[] = [];
  const fieldLocations = new Map<string, SourceLocation>();
  const at = (n: Node): SourceLocation => ctx.src.locate(n.range?.[0] ?? 0);
  const fail = (n: Node | undefined, code: ErrorCode, message: string, hint?: string): void => {
    errors.push(nodeError(ctx, n ?? map, code, message, hint));
  };
  const field = (key: string): Node | undefined => {
    const n = get(ctx, map, key);
    if (n) fieldLocations.set(key, at(n));
    return n;
  };

  const nameNode = field('name');
  const name = scalarText(nameNode);
  if (!nameNode) fail(map, 'DS0004', 'a workflow needs a `name`', 'add `name: my-workflow` to it');
  else if (!NAME_RE.test(name))
    fail(nameNode, 'DS0003', `workflow name \`${name}\` may contain only letters, digits, \`-\`, \`_\` and \`.\``);
  const where = ` in workflow \`${name}\``;

  const provider = readProvider(field('provider'), where, fail);
  const imageNode = field('image');
  if (provider === 'docker' && !imageNode)
    fail(map, 'DS0004', `workflow \`${name}\` uses provider \`docker\` but has no \`image\``, 'add `image: ubuntu` (or any image) to it');

  const lines = (key: string): string[] => {
    const n = field(key);
    if (isSeq(n)) {
      return items(ctx, n).map((item, i) => (fieldLocations.set(`${key}.${i}`, at(item)), scalarText(item)));
    }
    const out = scalarText(n).split('\n');
    while (out.length && out[out.length - 1]!.trim() === '') out.pop();
    out.forEach((_, i) => fieldLocations.set(`${key}.${i}`, blockLineLocation(ctx.src, n, i)));
    return out;
  };

  let entrypoint: string[] | undefined;
  const epNode = field('entrypoint');
  if (isSeq(epNode)) entrypoint = lines('entrypoint');
  else if (epNode) {
    entrypoint = splitShellWords(scalarText(epNode));
    if (!entrypoint) fail(epNode, 'DS0003', `unterminated quote in \`entrypoint\`${where}`);
    else entrypoint.forEach((_, i) => fieldLocations.set(`entrypoint.${i}`, at(epNode)));
  }

  const deps: DepSpec[] = [];
  items(ctx, field('deps')).forEach((item, i) => {
    fieldLocations.set(`deps.${i}`, at(item));
    const dep = readDep(ctx, item, where, fail);
    if (dep) deps.push({ ...dep, location: at(item) });
  });

  const artifacts: ArtifactSpec[] = [];
  items(ctx, field('artifacts')).forEach((item, i) => {
    fieldLocations.set(`artifacts.${i}`, at(item));
    const pathNode = isMap(item) ? get(ctx, item, 'path') : item;
    const raw = scalarText(pathNode);
    const path = insideRelative(raw);
    if (path === undefined)
      fail(pathNode, 'DS0009', `artifact path \`${raw}\`${where} leaves the working directory`,
        'artifacts are paths inside the project, such as ./output; to keep a folder outside it between runs, list it under `cache:`');
    else artifacts.push({ path, mount: isMap(item) && get(ctx, item, 'mount')?.toJSON() === true });
  });

  const cache: string[] = [];
  items(ctx, field('cache')).forEach((item, i) => {
    fieldLocations.set(`cache.${i}`, at(item));
    const pathNode = isMap(item) ? get(ctx, item, 'path') : item;
    const raw = scalarText(pathNode);
    const path = cachePath(raw);
    if (path === undefined) fail(pathNode, 'DS0009', `cache path \`${raw}\`${where} leaves the working directory`,
      'use a path inside the project, one under ~/, or an absolute one');
    else cache.push(path);
  });

  const env: { name: string; value?: string }[] = [];
  const envNode = field('env');
  const addEnv = (n: Node, name: string, value: string | undefined): void => {
    fieldLocations.set(`env.${name}`, at(n));
    if (!ENV_NAME_RE.test(name)) fail(n, 'DS0003', `\`${name}\`${where} is not a valid environment variable name`);
    else env.push(value === undefined ? { name } : { name, value });
  };
  if (isSeq(envNode)) {
    for (const item of items(ctx, envNode)) {
      const s = scalarText(item);
      const eq = s.indexOf('=');
      addEnv(item, eq < 0 ? s : s.slice(0, eq), eq < 0 ? undefined : s.slice(eq + 1));
    }
  } else if (isMap(envNode)) {
    for (const pair of envNode.items) {
      const value = deref(ctx, pair.value);
      addEnv(pair.key as Node, scalarText(pair.key as Node), value ? scalarText(value) : undefined);
    }
  }

  let ports = 0;
  const portsNode = field('ports');
  if (isSeq(portsNode))
    fail(portsNode, 'DS0013', `a list of ports${where} is not supported`,
      'give the number of ports to publish, e.g. `ports: 2`; the job reads them from $PORT_0, $PORT_1, …');
  else if (portsNode) ports = Number(portsNode.toJSON());

  const relPath = (key: string, what: string): string | undefined => {
    const n = field(key);
    if (!n) return undefined;
    const p = insideRelative(scalarText(n));
    if (p === undefined) fail(n, 'DS0009', `${what} \`${scalarText(n)}\`${where} leaves the working directory`, 'use a relative path inside the project');
    return p;
  };
  const workingDir = relPath('working_dir', '`working_dir`');
  const inputsNode = field('inputs');
  const inputs = inputsNode
    ? items(ctx, inputsNode).map((item, i) => {
        fieldLocations.set(`inputs.${i}`, at(item));
        const p = insideRelative(scalarText(item));
        if (p === undefined) fail(item, 'DS0009', `input path \`${scalarText(item)}\`${where} leaves the working directory`, 'use a relative path inside the project');
        return p ?? '';
      })
    : undefined;

  const resources = readResources(ctx, field('resources'), where, fail, fieldLocations);

  const authNode = field('registry_auth');
  let registryAuth: WorkflowSpec['registryAuth'];
  if (isMap(authNode)) {
    const u = get(ctx, authNode, 'username');
    const p = get(ctx, authNode, 'password');
    if (u) fieldLocations.set('registry_auth.username', at(u));
    if (p) fieldLocations.set('registry_auth.password', at(p));
    registryAuth = { username: scalarText(u), password: scalarText(p) };
  }

  const help = field('help');
  const python = field('python');
  const spec: WorkflowSpec = {
    name,
    ...(help ? { help: scalarText(help) } : {}),
    provider,
    ...(imageNode ? { image: scalarText(imageNode) } : {}),
    ...(entrypoint ? { entrypoint } : {}),
    commands: lines('commands'),
    setup: lines('setup'),
    deps,
    artifacts,
    cache,
    env,
    ports,
    ...(workingDir !== undefined ? { workingDir } : {}),
    ...(python ? { python: scalarText(python) } : {}),
    ...(inputs ? { inputs } : {}),
    resources,
    ...(registryAuth ? { registryAuth } : {}),
    location: at(map),
    fieldLocations,
  };
  return errors.length ? { errors } : { spec, errors };
}

type Fail = (n: Node | undefined, code: ErrorCode, message: string, hint?: string) => void;

function readProvider(n: Node | undefined, where: string, fail: Fail): Provider {
  if (!n) return 'bash';
  const p = scalarText(n);
  if ((PROVIDERS as readonly string[]).includes(p)) return p as Provider;
  if (NOT_OFFERED.includes(p))
    fail(n, 'DS0010', `provider '${p}'${where} is not offered by this dstack yet; use provider: bash with ports`,
      'e.g. `provider: bash`, `ports: 1`, and start the server in `commands`, listening on 0.0.0.0:$PORT_0');
  else fail(n, 'DS0003', `unknown provider \`${p}\`${where}${suggestion(didYouMean(p, PROVIDERS, 2))}`, 'expected `bash` or `docker`');
  return 'bash';
}

function readDep(ctx: Ctx, item: Node, where: string, fail: Fail): Omit<DepSpec, 'location'> | undefined {
  let kind: 'workflow' | 'tag';
  let name: string;
  let nameNode: Node = item;
  if (isMap(item)) {
    const wf = get(ctx, item, 'workflow');
    const tag = get(ctx, item, 'tag');
    if (wf && tag) return fail(item, 'DS0003', `a dep${where} names both a \`workflow\` and a \`tag\`; give one per dep`), undefined;
    if (!wf && !tag) return fail(item, 'DS0004', `a dep${where} needs \`workflow: NAME\` or \`tag: NAME\``), undefined;
    kind = wf ? 'workflow' : 'tag';
    nameNode = (wf ?? tag)!;
    name = scalarText(nameNode);
  } else {
    const s = scalarText(item);
    kind = s.startsWith(':') ? 'tag' : 'workflow';
    name = kind === 'tag' ? s.slice(1) : s;
  }
  if (name.trim() === '') return fail(nameNode, 'DS0003', `a dep${where} has an empty name`), undefined;
  // dstack 0.7's `owner/repo/name`: a workflow or tag of another repository, resolved through the team bucket.
  if (name.includes('/') && (name.split('/').length < 3 || name.split('/').some((p) => p.trim() === '')))
    return fail(nameNode, 'DS0003', `a dep on another repository${where} is written \`owner/repo/${kind === 'tag' ? 'tag' : 'workflow'}\`, not \`${name}\``,
      'for example `- workflow: acme/datasets/prepare` or `- tag: acme/datasets/v1`'), undefined;
  return { kind, name };
}

function readResources(ctx: Ctx, n: Node | undefined, where: string, fail: Fail, locs: Map<string, SourceLocation>): Resources {
  if (!isMap(n)) return {};
  const f = (key: string): Node | undefined => {
    const v = get(ctx, n, key);
    if (v) locs.set(`resources.${key}`, ctx.src.locate(v.range?.[0] ?? 0));
    return v;
  };
  const size = (v: Node | undefined, label: string): number | undefined => {
    if (!v) return undefined;
    const bytes = parseSize(scalarText(v));
    if (bytes === undefined) fail(v, 'DS0011', `invalid size \`${scalarText(v)}\` for \`${label}\`${where}`, SIZE_HINT);
    return bytes;
  };
  const remote = f('remote');
  if (remote)
    fail(remote, 'DS0013', `resources.remote is not supported${where}; pass --remote to dstack run`,
      'remove `remote:` from the workflow and run it with `dstack run NAME --remote`');
  const cpu = f('cpu');
  const memory = size(f('memory'), 'resources.memory');
  const shmSize = size(f('shm_size'), 'resources.shm_size');
  const interruptible = f('interruptible');
  const gpuNode = f('gpu');
  let gpu: GpuSpec | undefined;
  if (isScalar(gpuNode)) gpu = { count: Number(gpuNode.value) };
  else if (isMap(gpuNode)) {
    const count = get(ctx, gpuNode, 'count');
    const name = get(ctx, gpuNode, 'name');
    const mem = size(get(ctx, gpuNode, 'memory'), 'resources.gpu.memory');
    // `gpu: {name: V100}` in dstack 0.7 means one such GPU.
    gpu = { count: count ? Number(count.toJSON()) : 1, ...(name ? { name: scalarText(name) } : {}), ...(mem !== undefined ? { memory: mem } : {}) };
  }
  return {
    ...(cpu ? { cpu: Number(cpu.toJSON()) } : {}),
    ...(memory !== undefined ? { memory } : {}),
    ...(gpu ? { gpu } : {}),
    ...(shmSize !== undefined ? { shmSize } : {}),
    ...(interruptible ? { interruptible: interruptible.toJSON() === true } : {}),
  };
}

/** `~/…` and absolute cache paths are kept (normalised); relative ones must stay inside the project. */
function cachePath(raw: string): string | undefined {
  if (raw === '~' || raw.startsWith('~/')) return `~/${posix.normalize(raw.slice(2) || '.')}`.replace(/\/\.?$/, '');
  if (raw.startsWith('/')) return posix.normalize(raw).replace(/(.)\/$/, '$1');
  return insideRelative(raw) || undefined;
}

/** Where line `i` of a multi-line string value starts: the block scalar's lines follow its `|` header. */
function blockLineLocation(src: SourceFile, n: Node | undefined, i: number): SourceLocation {
  const start = src.locate(n?.range?.[0] ?? 0);
  if (!isScalar(n) || (n.type !== Scalar.BLOCK_LITERAL && n.type !== Scalar.BLOCK_FOLDED)) return start;
  const line = start.line + 1 + i;
  const text = src.lineText(line) ?? '';
  return { file: src.file, line, col: text.length - text.trimStart().length + 1 };
}
