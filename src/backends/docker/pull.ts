import type { BackendNotice } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import { revealSecrets, type SecretSource } from '../../engine/secrets.js';
import { SECRET_MARKER_RE, type JobSpec } from '../../engine/types.js';
import { DockerApiError, engineError, engineTimeout, isStatus, readAll, type DockerClient } from './docker.js';

export interface RegistryAuth {
  readonly username: string;
  readonly password: string;
}

/**
 * `name[:tag]` or `name[:tag]@digest` → what `POST /images/create` wants. A digest wins over the
 * tag beside it (the tag only says which one was pinned): the name goes without it, so the engine
 * pulls exactly the digest, as `docker pull name:tag@digest` does.
 */
export function splitImage(image: string): { readonly name: string; readonly tag: string } {
  const at = image.indexOf('@');
  if (at >= 0) return { name: splitImage(image.slice(0, at)).name, tag: image.slice(at + 1) };
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/')) return { name: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { name: image, tag: 'latest' };
}

/** The registry a name points at, as Docker reads it (`ghcr.io/x/y` → ghcr.io; `ubuntu` → Docker Hub). */
function registryOf(name: string): string {
  const first = name.split('/')[0] ?? '';
  return name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')
    ? first
    : 'https://index.docker.io/v1/';
}

const OFFLINE_RE = /no such host|dial tcp|i\/o timeout|network is unreachable|connection refused|TLS handshake timeout/i;

/** What a registry (through the engine) answers when it wants credentials or refuses them. */
const AUTH_RE = /no basic auth credentials|unauthorized|authentication required|access denied|denied: requested access/i;

function unavailable(image: string, reason: string, auth: boolean): DstackError {
  if (AUTH_RE.test(reason)) {
    return auth
      ? new DstackError('DS0291', `the registry refused the credentials of registry_auth for image '${image}' (${reason})`, {
          hint: 'check the username and password it names (`dstack secrets list`; replace one with `dstack secrets add NAME`)',
        })
      : new DstackError('DS0290', `image '${image}' needs credentials: the registry answered '${reason}'`, {
          hint: 'give the workflow `registry_auth:` with `username: ${{ secrets.REG_USER }}` and `password: ${{ secrets.REG_PASS }}`, and add them with `dstack secrets add`',
        });
  }
  const why = OFFLINE_RE.test(reason) ? `offline: ${reason}` : reason;
  return new DstackError('DS0201', `image '${image}' is not available locally and could not be pulled (${why})`, {
    hint: `build it locally (\`docker build -t ${image} .\`) or pull it yourself with \`docker pull ${image}\``,
  });
}

/**
 * The engine's `X-Registry-Auth`: the credentials as JSON in URL-safe base64 WITH its `=` padding
 * (Go's base64.URLEncoding, as the docker CLI writes it). Node's 'base64url' drops the padding, and
 * the engine then reads no credentials at all whenever the JSON's length is not a multiple of three.
 */
export function registryAuthHeader(auth: RegistryAuth, imageName: string): string {
  const config = { username: auth.username, password: auth.password, serveraddress: registryOf(imageName) };
  return Buffer.from(JSON.stringify(config)).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

/** What the job needs to know of an image. */
export interface ImageFacts {
  /** The engine's image id (`sha256:…`): the identity of what will really run. */
  readonly id: string;
  /** HOME from the image's own env, if it sets one. */
  readonly home?: string;
  /** `name@sha256:…` for each registry it was pulled from or pushed to: how to pull exactly this image elsewhere. */
  readonly repoDigests: readonly string[];
}

/**
 * Makes sure `image` is in the engine: one inspect when it is, a pull with progress when not.
 */
export async function ensureImage(
  client: DockerClient,
  image: string,
  options: EnsureOptions,
): Promise<ImageFacts> {
  try {
    return imageFacts(await client.imageInspect(image, options.signal));
  } catch (e) {
    if (!isStatus(e, 404)) throw e;
  }
  if (options.pull === false) {
    throw new DstackError('DS0201', `image '${image}' is not available locally, and pulling it was not asked for`, {
      hint: `pull it with \`docker pull ${image}\`, or let dstack pull it (a run without \`--dry-run\`)`,
    });
  }
  const { name, tag } = splitImage(image);
  const headers: Record<string, string> = options.auth ? { 'X-Registry-Auth': registryAuthHeader(options.auth, name) } : {};
  let res;
  try {
    res = await client.open('POST', '/images/create', { query: { fromImage: name, tag }, headers, signal: options.signal, what: `pull ${image}` });
  } catch (e) {
    if (e instanceof DockerApiError) throw unavailable(image, e.message, options.auth !== undefined);
    throw e;
  }
  // The answer is a stream of JSON lines; a failure midway arrives as a line with `error`.
  const layers = new Map<string, { current: number; total: number }>();
  let pending = '';
  let failure: string | undefined;
  const onLine = (line: string): void => {
    if (!line.trim()) return;
    let msg: { error?: string; id?: string; status?: string; progressDetail?: { current?: number; total?: number } };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    if (msg.error) failure = msg.error;
    const detail = msg.progressDetail;
    if (msg.id && msg.status === 'Downloading' && detail?.total) {
      layers.set(msg.id, { current: detail.current ?? 0, total: detail.total });
    } else if (msg.id && (msg.status === 'Download complete' || msg.status === 'Already exists')) {
      const l = layers.get(msg.id);
      if (l) l.current = l.total;
    } else {
      return;
    }
    let current = 0;
    let total = 0;
    for (const l of layers.values()) {
      current += l.current;
      total += l.total;
    }
    options.notify({ kind: 'pull-progress', image, current, total });
  };
  // A pull may take long, but not in silence: a progress stream quiet for `pullIdle` is a frozen engine.
  let idle: ReturnType<typeof engineTimeout> | undefined;
  const quiet = (): NodeJS.Timeout =>
    setTimeout(() => {
      idle = engineTimeout(client.endpoint, `pull ${image}: no progress`, client.timeouts.pullIdle);
      res.destroy(idle);
    }, client.timeouts.pullIdle);
  let timer = quiet();
  res.on('data', (chunk: Buffer) => {
    clearTimeout(timer);
    timer = quiet();
    pending += chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  });
  try {
    await readAll(res);
  } catch (e) {
    throw idle ?? engineError(e, client.endpoint);
  } finally {
    clearTimeout(timer);
  }
  onLine(pending);
  if (failure !== undefined) throw unavailable(image, failure, options.auth !== undefined);
  options.notify({ kind: 'pull-done', image });
  return imageFacts(await client.imageInspect(image, options.signal));
}

function imageFacts(inspect: unknown): ImageFacts {
  const info = inspect as { Id?: unknown; Config?: { Env?: unknown }; RepoDigests?: unknown } | undefined;
  const id = typeof info?.Id === 'string' ? info.Id : '';
  const env = info?.Config?.Env;
  const home = Array.isArray(env) ? env.find((e): e is string => typeof e === 'string' && e.startsWith('HOME=')) : undefined;
  const repoDigests = Array.isArray(info?.RepoDigests) ? info.RepoDigests.filter((d): d is string => typeof d === 'string') : [];
  return home ? { id, home: home.slice('HOME='.length), repoDigests } : { id, repoDigests };
}

/**
 * The identity a job's fingerprint was computed with, and how to pull exactly that image on another
 * engine: `name@sha256:…` references (an image built locally has none).
 */
export interface ImagePin {
  /** An engine's image id, or a registry's manifest digest (`sha256:…`). */
  readonly digest: string;
  readonly pullAs: readonly string[];
}

const matches = (facts: ImageFacts, digest: string): boolean => facts.id === digest || facts.repoDigests.some((d) => d.endsWith(`@${digest}`));

/**
 * The image to create the job's container from (its id): `image` as this engine holds it when that
 * is the pinned one; else pulled by one of the pin's references — the same content wherever it is
 * pulled; else DS0214. Never another image silently: a mixed pool must not fingerprint one image
 * and run another. Without a pin, `image` as the engine has it.
 */
export async function pinnedImage(images: ImageCache, image: string, pin: ImagePin | undefined, options: EnsureOptions & { readonly where: string }): Promise<ImageFacts> {
  const facts = await images.ensure(image, options);
  if (!pin || matches(facts, pin.digest)) return facts;
  for (const ref of pin.pullAs) {
    const pulled = await images.ensure(ref, options).catch(() => undefined);
    if (pulled && matches(pulled, pin.digest)) return pulled;
  }
  const short = (d: string): string => d.replace(/^sha256:/, '').slice(0, 12);
  throw new DstackError('DS0214', `image '${image}' ${options.where} is ${short(facts.id)}, not ${short(pin.digest)}, the one the job's fingerprint was computed with`, {
    hint: pin.pullAs.length
      ? `it could not be pulled as ${pin.pullAs.join(' or ')} there; check that the host can reach the registry`
      : 'the image has no registry digest to pull it by: build the same image on every machine, or push it to a registry and use that name',
  });
}

export interface EnsureOptions {
  readonly auth?: RegistryAuth;
  readonly notify: (n: BackendNotice) => void;
  readonly signal?: AbortSignal;
  /** false: look only; an image that is not there is DS0201 at once. Default true. */
  readonly pull?: boolean;
}

/**
 * `ensureImage` once per image name for the backend's lifetime: `imageDigest` (asked for the
 * fingerprint) and every job's bootstrap share one inspect, or one pull. A failure is forgotten, so
 * the next caller tries again (after `docker build`, say); a pull cancelled by another caller's
 * signal is retried for a caller whose own signal still stands.
 */
export class ImageCache {
  private readonly known = new Map<string, { readonly facts: Promise<ImageFacts>; readonly pull: boolean }>();

  constructor(private readonly client: () => DockerClient) {}

  async ensure(image: string, options: EnsureOptions): Promise<ImageFacts> {
    const pull = options.pull !== false;
    for (;;) {
      let entry = this.known.get(image);
      if (!entry) {
        const facts = ensureImage(this.client(), image, options);
        const made = { facts, pull };
        entry = made;
        this.known.set(image, made);
        facts.catch(() => {
          if (this.known.get(image) === made) this.known.delete(image);
        });
      }
      try {
        return await entry.facts;
      } catch (e) {
        if (options.signal?.aborted) throw e;
        // Someone else's cancelled pull, or a look-only call, says nothing about a pull of ours.
        const cancelled = (e as Error | undefined)?.name === 'AbortError';
        if (!cancelled && !(pull && !entry.pull)) throw e;
      }
    }
  }

  clear(): void {
    this.known.clear();
  }
}

/**
 * The spec's `registry_auth` with its secret markers resolved. Without a resolver the markers
 * can't become credentials: the pull goes anonymous.
 */
export function registryAuthOf(spec: JobSpec, secrets: SecretSource | undefined): RegistryAuth | undefined {
  const auth = spec.registryAuth;
  if (!auth) return undefined;
  const where = `registry_auth of workflow '${spec.workflow}'`;
  if (!secrets) {
    const hasMarker = (s: string): boolean => new RegExp(SECRET_MARKER_RE.source).test(s);
    if (hasMarker(auth.username) || hasMarker(auth.password)) return undefined;
    return auth;
  }
  return { username: revealSecrets(auth.username, secrets, where), password: revealSecrets(auth.password, secrets, where) };
}
