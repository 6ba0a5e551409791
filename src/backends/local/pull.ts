import type { BackendNotice } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import { DockerApiError, isStatus, readAll, type DockerClient } from './docker.js';

export interface RegistryAuth {
  readonly username: string;
  readonly password: string;
}

/** `name[:tag]` or `name@digest` → what `POST /images/create` wants. */
export function splitImage(image: string): { readonly name: string; readonly tag: string } {
  const at = image.indexOf('@');
  if (at >= 0) return { name: image.slice(0, at), tag: image.slice(at + 1) };
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

function unavailable(image: string, reason: string): DstackError {
  const why = OFFLINE_RE.test(reason) ? `offline: ${reason}` : reason;
  return new DstackError('DS0201', `image '${image}' is not available locally and could not be pulled (${why})`, {
    hint: `build it locally (\`docker build -t ${image} .\`) or pull it yourself with \`docker pull ${image}\``,
  });
}

/** What the job needs to know of an image. */
export interface ImageFacts {
  /** HOME from the image's own env, if it sets one. */
  readonly home?: string;
}

/**
 * Makes sure `image` is in the engine: one inspect when it is, a pull with progress when not.
 */
export async function ensureImage(
  client: DockerClient,
  image: string,
  options: { readonly auth?: RegistryAuth; readonly notify: (n: BackendNotice) => void; readonly signal?: AbortSignal },
): Promise<ImageFacts> {
  try {
    return imageFacts(await client.imageInspect(image, options.signal));
  } catch (e) {
    if (!isStatus(e, 404)) throw e;
  }
  const { name, tag } = splitImage(image);
  const headers: Record<string, string> = {};
  if (options.auth) {
    const config = { username: options.auth.username, password: options.auth.password, serveraddress: registryOf(name) };
    headers['X-Registry-Auth'] = Buffer.from(JSON.stringify(config)).toString('base64url');
  }
  let res;
  try {
    res = await client.open('POST', '/images/create', { query: { fromImage: name, tag }, headers, signal: options.signal });
  } catch (e) {
    if (e instanceof DockerApiError) throw unavailable(image, e.message);
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
  res.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  });
  await readAll(res);
  onLine(pending);
  if (failure !== undefined) throw unavailable(image, failure);
  options.notify({ kind: 'pull-done', image });
  return imageFacts(await client.imageInspect(image, options.signal));
}

function imageFacts(inspect: unknown): ImageFacts {
  const env = (inspect as { Config?: { Env?: unknown } } | undefined)?.Config?.Env;
  const home = Array.isArray(env) ? env.find((e): e is string => typeof e === 'string' && e.startsWith('HOME=')) : undefined;
  return home ? { home: home.slice('HOME='.length) } : {};
}
