/**
 * Turns one workflow's YAML mapping (already shape-checked by schema.ts) into a WorkflowSpec,
 * reading scalars from their source text (`python: 3.10` stays "3.10") and recording where each
 * field was written. Errors here are about meaning: sizes and their bounds, paths, image names,
 * providers, dstack 0.7 features this dstack does not run (yet). Warnings are for what loads but
 * will not work as written.
 */
import { posix } from 'node:path';
import { isMap, isScalar, isSeq, Scalar, type Node, type YAMLMap } from 'yaml';
import type { DstackError, SourceLocation } from '../errors.js';
import { artifactPath, insideRelative } from '../paths.js';
import type { ArtifactSpec, DepSpec, Provider, WorkflowSpec } from '../types.js';
import { derefNode, type AliasTargets } from './aliases.js';
import { readResources, type Fail } from './convert-resources.js';
import { imageReferenceProblem } from './image-ref.js';
import { LIMITS } from './limits.js';
import { splitShellWords } from './shell.js';
import { nodeError, type SourceFile } from './source-file.js';
import { didYouMean, shown, suggestion } from './source.js';

/** dstack 0.7's dev environments: a later dstack brings them; until then such a workflow cannot run. */
const DEV_ENVIRONMENTS = ['code', 'lab', 'notebook'];
/** Other dstack 0.7 providers that started an app; this dstack runs them as `bash` with `ports`. */
const NOT_OFFERED = ['ssh', 'python', 'tensorboard', 'torchrun', 'streamlit', 'gradio', 'fastapi'];
const PROVIDERS: readonly Provider[] = ['bash', 'docker'];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SECRET_RE = /\$\{\{\s*secrets\./;

export interface Ctx {
  readonly src: SourceFile;
  readonly aliases: AliasTargets;
}

/** A field's value node; `key:` with nothing after it counts as absent. */
function get(ctx: Ctx, map: YAMLMap, key: string): Node | undefined {
  const pair = map.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
  return derefNode(ctx.aliases, pair?.value);
}

/** A scalar as the user wrote it: strings as parsed, numbers and booleans by their source text. */
export function scalarText(n: Node | undefined): string {
  if (!isScalar(n)) return '';
  if (typeof n.value === 'string') return n.value;
  return n.source ?? String(n.value);
}

const items = (ctx: Ctx, n: Node | undefined): Node[] =>
  isSeq(n) ? n.items.map((i) => derefNode(ctx.aliases, i)).filter((i): i is Node => i !== undefined) : [];

interface Reader {
  readonly ctx: Ctx;
  readonly map: YAMLMap;
  readonly name: string;
  /** Appended to messages: " in workflow `train`". */
  readonly where: string;
  readonly fail: Fail;
  readonly warn: Fail;
  readonly at: (n: Node) => SourceLocation;
  readonly locations: Map<string, SourceLocation>;
  /** A field's node, its location recorded under `key`. */
  readonly field: (key: string) => Node | undefined;
}

export function convertWorkflow(ctx: Ctx, map: YAMLMap): { spec?: WorkflowSpec; errors: DstackError[]; warnings: DstackError[] } {
  const errors: DstackError[] = [];
  const warnings: DstackError[] = [];
  const locations = new Map<string, SourceLocation>();
  const at = (n: Node): SourceLocation => ctx.src.locate(n.range?.[0] ?? 0);
  const r: Reader = {
    ctx,
    map,
    name: '',
    where: '',
    fail: (n, code, message, hint) => void errors.push(nodeError(ctx, n ?? map, code, message, hint)),
    warn: (n, code, message, hint) => void warnings.push(nodeError(ctx, n ?? map, code, message, hint)),
    at,
    locations,
    field: (key) => {
      const n = get(ctx, map, key);
      if (n) locations.set(key, at(n));
      return n;
    },
  };
  const name = readName(r);
  const rw: Reader = { ...r, name, where: ` in workflow \`${shown(name)}\`` };
  const provider = readProvider(rw);
  const image = readImage(rw, provider);
  const help = rw.field('help');
  const python = rw.field('python');
  const workingDir = relPath(rw, 'working_dir', '`working_dir`');
  const inputs = readInputs(rw);
  const { resources, placement } = readResources(
    { get: (m, k) => get(ctx, m, k), at, text: scalarText, where: rw.where, fail: rw.fail, locations },
    rw.field('resources'),
  );
  const registryAuth = readRegistryAuth(rw);
  const entrypoint = readEntrypoint(rw);
  const spec: WorkflowSpec = {
    name,
    ...(help ? { help: scalarText(help) } : {}),
    provider,
    ...(image !== undefined ? { image } : {}),
    ...(entrypoint ? { entrypoint } : {}),
    commands: lines(rw, 'commands'),
    setup: lines(rw, 'setup'),
    deps: readDeps(rw),
    artifacts: readArtifacts(rw),
    cache: readCache(rw),
    env: readEnv(rw),
    ports: readPorts(rw),
    ...retryOf(rw),
    ...(workingDir !== undefined ? { workingDir } : {}),
    ...(python ? { python: scalarText(python) } : {}),
    ...(inputs ? { inputs } : {}),
    resources,
    ...(registryAuth ? { registryAuth } : {}),
    ...(placement ? { placement } : {}),
    location: at(map),
    fieldLocations: locations,
  };
  return errors.length ? { errors, warnings } : { spec, errors, warnings };
}

function readName(r: Reader): string {
  const nameNode = r.field('name');
  const name = scalarText(nameNode);
  if (!nameNode) r.fail(r.map, 'DS0004', 'a workflow needs a `name`', 'add `name: my-workflow` to it');
  else if (name.length > LIMITS.nameLength)
    r.fail(nameNode, 'DS0019', `workflow name \`${shown(name)}\` is ${name.length} characters long; the most is ${LIMITS.nameLength}`,
      'names become folder names and container labels: pick a shorter one');
  else if (!NAME_RE.test(name))
    r.fail(nameNode, 'DS0003', `workflow name \`${shown(name)}\` may contain only letters, digits, \`-\`, \`_\` and \`.\``);
  return name;
}

function readProvider(r: Reader): Provider {
  const n = r.field('provider');
  if (!n) return 'bash';
  const p = scalarText(n);
  if ((PROVIDERS as readonly string[]).includes(p)) return p as Provider;
  if (DEV_ENVIRONMENTS.includes(p))
    r.fail(n, 'DS0027', `provider \`${p}\`${r.where} is a dev environment, which this dstack cannot run yet; the workflow is not runnable`,
      'the rest of the project runs; for a server of your own, use `provider: bash`, `ports: 1`, and start it on 0.0.0.0:$PORT_0');
  else if (NOT_OFFERED.includes(p))
    r.fail(n, 'DS0010', `provider '${p}'${r.where} is not offered by this dstack yet; use provider: bash with ports`,
      'e.g. `provider: bash`, `ports: 1`, and start the server in `commands`, listening on 0.0.0.0:$PORT_0');
  else r.fail(n, 'DS0003', `unknown provider \`${shown(p)}\`${r.where}${suggestion(didYouMean(p, PROVIDERS, 2))}`, 'expected `bash` or `docker`');
  return 'bash';
}

/**
 * The image as written. A name with a template is checked once interpolated (resolve.ts); a secret
 * in it never can be: image names are stored, logged and fingerprinted.
 */
function readImage(r: Reader, provider: Provider): string | undefined {
  const n = r.field('image');
  if (!n) {
    if (provider === 'docker')
      r.fail(r.map, 'DS0004', `workflow \`${shown(r.name)}\` uses provider \`docker\` but has no \`image\``,
        'add `image: ubuntu` (or any image) to it');
    return undefined;
  }
  const image = scalarText(n);
  if (SECRET_RE.test(image))
    r.fail(n, 'DS0021', `\`image\`${r.where} reads a secret; image names are stored and shown, so they cannot hold one`,
      'put the registry credentials under `registry_auth:` (username and password may read secrets)');
  else if (!image.includes('${{')) {
    const problem = imageReferenceProblem(image);
    if (problem) r.fail(n, 'DS0020', `invalid image \`${shown(image)}\`${r.where}: ${problem}`);
  }
  return image;
}

function lines(r: Reader, key: string): string[] {
  const n = r.field(key);
  if (isSeq(n)) return items(r.ctx, n).map((item, i) => (r.locations.set(`${key}.${i}`, r.at(item)), scalarText(item)));
  const out = scalarText(n).split('\n');
  while (out.length && out[out.length - 1]!.trim() === '') out.pop();
  out.forEach((_, i) => r.locations.set(`${key}.${i}`, blockLineLocation(r.ctx.src, n, i)));
  return out;
}

function readEntrypoint(r: Reader): string[] | undefined {
  const n = r.field('entrypoint');
  if (isSeq(n)) return lines(r, 'entrypoint');
  if (!n) return undefined;
  const words = splitShellWords(scalarText(n));
  if (!words) r.fail(n, 'DS0003', `unterminated quote in \`entrypoint\`${r.where}`);
  else words.forEach((_, i) => r.locations.set(`entrypoint.${i}`, r.at(n)));
  return words;
}

function readDeps(r: Reader): DepSpec[] {
  const deps: DepSpec[] = [];
  items(r.ctx, r.field('deps')).forEach((item, i) => {
    r.locations.set(`deps.${i}`, r.at(item));
    const dep = readDep(r, item);
    if (dep) deps.push({ ...dep, location: r.at(item) });
  });
  return deps;
}

function readDep(r: Reader, item: Node): Omit<DepSpec, 'location'> | undefined {
  let kind: 'workflow' | 'tag';
  let name: string;
  let nameNode: Node = item;
  if (isMap(item)) {
    const wf = get(r.ctx, item, 'workflow');
    const tag = get(r.ctx, item, 'tag');
    if (wf && tag) return r.fail(item, 'DS0003', `a dep${r.where} names both a \`workflow\` and a \`tag\`; give one per dep`), undefined;
    if (!wf && !tag) return r.fail(item, 'DS0004', `a dep${r.where} needs \`workflow: NAME\` or \`tag: NAME\``), undefined;
    kind = wf ? 'workflow' : 'tag';
    nameNode = (wf ?? tag)!;
    name = scalarText(nameNode);
  } else {
    const s = scalarText(item);
    kind = s.startsWith(':') ? 'tag' : 'workflow';
    name = kind === 'tag' ? s.slice(1) : s;
  }
  if (name.trim() === '') return r.fail(nameNode, 'DS0003', `a dep${r.where} has an empty name`), undefined;
  // dstack 0.7's `owner/repo/name`: a workflow or tag of another repository, resolved through the team bucket.
  if (name.includes('/') && (name.split('/').length < 3 || name.split('/').some((p) => p.trim() === '')))
    return r.fail(nameNode, 'DS0003', `a dep on another repository${r.where} is written \`owner/repo/${kind === 'tag' ? 'tag' : 'workflow'}\`, not \`${shown(name)}\``,
      'for example `- workflow: acme/datasets/prepare` or `- tag: acme/datasets/v1`'), undefined;
  return { kind, name };
}

function readArtifacts(r: Reader): ArtifactSpec[] {
  const artifacts: ArtifactSpec[] = [];
  items(r.ctx, r.field('artifacts')).forEach((item, i) => {
    r.locations.set(`artifacts.${i}`, r.at(item));
    const pathNode = isMap(item) ? get(r.ctx, item, 'path') : item;
    const raw = scalarText(pathNode);
    const p = artifactPath(raw);
    if ('error' in p) {
      r.fail(pathNode, 'DS0009', `artifact path \`${shown(raw)}\`${r.where} ${p.error}`,
        'artifacts are paths inside the project, such as ./output, or absolute paths in the container, such as /opt/venv');
      return;
    }
    const mountNode = isMap(item) ? get(r.ctx, item, 'mount') : undefined;
    const mount = mountNode?.toJSON() === true;
    // Outside /workflow (an environment under /opt): saved from the container's file system after the
    // job and restored in dependents (src/backends/docker/archive.ts), into the container's own layer.
    // Live (a folder of the host bound there) it would hide what the image has at that path and what
    // the deps restored, so `mount` is not honoured, and the user is told rather than left to wonder.
    if (p.absolute) {
      if (mount) {
        r.warn(mountNode!, 'DS0013', `\`mount: true\` on artifact \`${shown(raw)}\`${r.where} is ignored: an artifact outside /workflow is saved when the job ends, not live while it runs`,
          'drop `mount: true`, or keep the artifact under /workflow (such as ./output) to see it live on the machine while the job runs');
      }
      artifacts.push({ path: p.path, mount: false, absolute: true });
    } else artifacts.push({ path: p.path, mount });
  });
  return artifacts;
}

function readCache(r: Reader): string[] {
  const cache: string[] = [];
  items(r.ctx, r.field('cache')).forEach((item, i) => {
    r.locations.set(`cache.${i}`, r.at(item));
    const pathNode = isMap(item) ? get(r.ctx, item, 'path') : item;
    const raw = scalarText(pathNode);
    const path = cachePath(raw);
    if (path === undefined)
      r.fail(pathNode, 'DS0009', `cache path \`${shown(raw)}\`${r.where} leaves the working directory`, 'use a path inside the project, one under ~/, or an absolute one');
    else cache.push(path);
  });
  return cache;
}

function readEnv(r: Reader): { name: string; value?: string }[] {
  const env: { name: string; value?: string }[] = [];
  const envNode = r.field('env');
  const add = (n: Node, name: string, value: string | undefined): void => {
    r.locations.set(`env.${name}`, r.at(n));
    if (!ENV_NAME_RE.test(name)) r.fail(n, 'DS0003', `\`${shown(name)}\`${r.where} is not a valid environment variable name`);
    else env.push(value === undefined ? { name } : { name, value });
  };
  if (isSeq(envNode)) {
    for (const item of items(r.ctx, envNode)) {
      const s = scalarText(item);
      const eq = s.indexOf('=');
      add(item, eq < 0 ? s : s.slice(0, eq), eq < 0 ? undefined : s.slice(eq + 1));
    }
  } else if (isMap(envNode)) {
    for (const pair of envNode.items) {
      const value = derefNode(r.ctx.aliases, pair.value);
      add(pair.key as Node, scalarText(pair.key as Node), value ? scalarText(value) : undefined);
    }
  }
  return env;
}

/** `retry: N`: how many times an interrupted job (a spot instance taken back) is resubmitted. */
function retryOf(r: Reader): { readonly retry?: number } {
  const n = r.field('retry');
  if (!n) return {};
  const retry = Number(n.toJSON());
  if (retry > LIMITS.retry) {
    r.fail(n, 'DS0019', `\`retry\`${r.where} is out of bounds: the most is ${LIMITS.retry}`, 'how many times an interrupted job runs again, e.g. `retry: 2`');
    return {};
  }
  return retry > 0 ? { retry } : {};
}

function readPorts(r: Reader): number {
  const n = r.field('ports');
  if (!n) return 0;
  if (isSeq(n)) {
    r.fail(n, 'DS0013', `a list of ports${r.where} is not supported`,
      'give the number of ports to publish, e.g. `ports: 2`; the job reads them from $PORT_0, $PORT_1, …');
    return 0;
  }
  const ports = Number(n.toJSON());
  if (ports > LIMITS.ports) {
    r.fail(n, 'DS0019', `\`ports\`${r.where} is out of bounds: the most is ${LIMITS.ports}`, 'the number of ports to publish, e.g. `ports: 1`');
    return 0;
  }
  return ports;
}

function relPath(r: Reader, key: string, what: string): string | undefined {
  const n = r.field(key);
  if (!n) return undefined;
  const p = insideRelative(scalarText(n));
  if (p === undefined) r.fail(n, 'DS0009', `${what} \`${shown(scalarText(n))}\`${r.where} leaves the working directory`, 'use a relative path inside the project');
  return p;
}

function readInputs(r: Reader): string[] | undefined {
  const n = r.field('inputs');
  if (!n) return undefined;
  return items(r.ctx, n).map((item, i) => {
    r.locations.set(`inputs.${i}`, r.at(item));
    const p = insideRelative(scalarText(item));
    if (p === undefined) r.fail(item, 'DS0009', `input path \`${shown(scalarText(item))}\`${r.where} leaves the working directory`, 'use a relative path inside the project');
    return p ?? '';
  });
}

function readRegistryAuth(r: Reader): WorkflowSpec['registryAuth'] {
  const n = r.field('registry_auth');
  if (!isMap(n)) return undefined;
  const u = get(r.ctx, n, 'username');
  const p = get(r.ctx, n, 'password');
  if (u) r.locations.set('registry_auth.username', r.at(u));
  if (p) r.locations.set('registry_auth.password', r.at(p));
  return { username: scalarText(u), password: scalarText(p) };
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
