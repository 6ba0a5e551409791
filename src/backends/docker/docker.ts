/**
 * A small Docker Engine API client over node:http, honouring DOCKER_HOST the way the docker CLI and
 * docker-modem read it (`unix://PATH`, `tcp://HOST:PORT`, TLS with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH).
 *
 * Why not dockerode at run time: `require('dockerode')` costs ~130 ms here (it loads ssh2, grpc-js
 * and protobufjs at the top level, ~90 ms even bundled), against a `docker run --rm` floor of ~330 ms
 * that a local `dstack run` must stay within 1.25× of. The dozen calls we make are plain HTTP; the
 * types still come from @types/dockerode. `ssh://` hosts are not supported (see `endpointFromEnv`).
 */
import http from 'node:http';
import https from 'node:https';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type Dockerode from 'dockerode';
import { DstackError } from '../../engine/errors.js';
import { dockerTimeouts, type DockerTimeouts } from './timeouts.js';

export type ContainerCreateOptions = Dockerode.ContainerCreateOptions;
export type ContainerInspectInfo = Dockerode.ContainerInspectInfo;
export type ContainerInfo = Dockerode.ContainerInfo;

/** Where the engine is, and how to describe it in a message. */
export interface Endpoint {
  /** `unix:///var/run/docker.sock`, `tcp://10.0.0.2:2375`. */
  readonly describe: string;
  readonly socketPath?: string;
  readonly host?: string;
  readonly port?: number;
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  /**
   * Opens one stream to the engine per request, instead of a socket or TCP address: the SSH pool
   * forwards a host's /var/run/docker.sock through its SSH connection (ssh/docker-remote.ts).
   */
  readonly connect?: () => Promise<Duplex>;
}

export function endpointFromEnv(env: NodeJS.ProcessEnv = process.env): Endpoint {
  const raw = env.DOCKER_HOST?.trim();
  if (!raw) {
    // Docker Desktop's per-user socket wins when it exists, as in the docker CLI and docker-modem.
    const user = join(homedir(), '.docker', 'run', 'docker.sock');
    const socketPath = existsSync(user) ? user : '/var/run/docker.sock';
    return { describe: `unix://${socketPath}`, socketPath };
  }
  if (raw.startsWith('unix://')) {
    const socketPath = raw.slice('unix://'.length) || '/var/run/docker.sock';
    return { describe: `unix://${socketPath}`, socketPath };
  }
  if (raw.startsWith('ssh://') || raw.startsWith('npipe://')) {
    throw new DstackError('DS0200', `DOCKER_HOST=${raw} is not supported by the local backend`, {
      hint: 'forward the socket instead: `ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock HOST &` and set DOCKER_HOST=unix:///tmp/docker.sock',
    });
  }
  let url: URL;
  try {
    url = new URL(raw.includes('//') ? raw : `tcp://${raw}`);
  } catch {
    throw new DstackError('DS0200', `DOCKER_HOST=${raw} is not a Docker address`, {
      hint: 'expected unix:///path/to/docker.sock or tcp://host:port',
    });
  }
  const port = Number(url.port || (env.DOCKER_TLS_VERIFY === '1' ? 2376 : 2375));
  const secure = env.DOCKER_TLS_VERIFY === '1' || port === 2376 || url.protocol === 'https:';
  let tls: Endpoint['tls'];
  if (secure) {
    const dir = env.DOCKER_CERT_PATH ?? join(homedir(), '.docker');
    const read = (f: string): Buffer | undefined => (existsSync(join(dir, f)) ? readFileSync(join(dir, f)) : undefined);
    tls = { ca: read('ca.pem'), cert: read('cert.pem'), key: read('key.pem') };
  }
  return { describe: `tcp://${url.hostname}:${port}`, host: url.hostname, port, tls };
}

/** An answer from the engine with a status the caller did not expect. */
export class DockerApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'DockerApiError';
  }
}

export const isStatus = (e: unknown, ...statuses: number[]): boolean =>
  e instanceof DockerApiError && statuses.includes(e.status);

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'EPERM', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND']);

/** Turns a failure to reach the engine into DS0200; anything else passes through unchanged. */
export function engineError(e: unknown, endpoint: Endpoint): unknown {
  if (e instanceof DstackError || e instanceof DockerApiError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EACCES' || code === 'EPERM') {
    return new DstackError('DS0200', `permission denied on the Docker engine at ${endpoint.describe}`, {
      hint: 'add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again), or set DOCKER_HOST',
      cause: e,
    });
  }
  if (code !== undefined && CONNECTION_CODES.has(code)) {
    return new DstackError('DS0200', `no Docker engine answers at ${endpoint.describe}`, {
      hint: 'start one: `sudo dockerd &` or `scripts/ensure-docker.sh`, or set DOCKER_HOST',
      cause: e,
    });
  }
  return e;
}

export interface RequestOptions {
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  /** A body streamed as it is read (a tar for `PUT /containers/{id}/archive`); `body` is then ignored. */
  readonly upload?: Readable;
  /**
   * How long the engine has (timeouts.ts): for `open`, until the answer's headers; for `call`, until
   * the whole answer. Default: `inspect` for a call, `streamOpen` for a stream.
   */
  readonly timeoutMs?: number;
  /** The call in a few words, for DS0060 (`create the container`). Default: method and path. */
  readonly what?: string;
}

/** The engine did not answer in time: it is frozen, or far too busy. */
export function engineTimeout(endpoint: Endpoint, what: string, ms: number): DstackError {
  return new DstackError('DS0060', `the Docker engine at ${endpoint.describe} did not answer in ${formatSeconds(ms)} (${what})`, {
    hint: 'check it with `docker info`; a hung dockerd needs a restart. `dstack ps` then shows what was left and reaps it',
  });
}

const formatSeconds = (ms: number): string => (ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`);

interface Sent {
  readonly res: IncomingMessage;
  /** Stops the call's clock (the answer is in, or the caller reads a stream of its own). */
  readonly disarm: () => void;
  /** The DS0060 when the clock ran out, for the body's read. */
  readonly expired: () => DstackError | undefined;
}

export class DockerClient {
  readonly endpoint: Endpoint;
  readonly timeouts: DockerTimeouts;
  private readonly agent: http.Agent;

  constructor(endpoint: Endpoint = endpointFromEnv(), timeouts: DockerTimeouts = dockerTimeouts()) {
    this.endpoint = endpoint;
    this.timeouts = timeouts;
    this.agent = endpoint.connect
      ? new StreamAgent(endpoint.connect)
      : endpoint.tls
        ? new https.Agent({ keepAlive: true })
        : new http.Agent({ keepAlive: true });
  }

  /**
   * Sends a request and resolves with the response as soon as its headers arrive, so a caller can
   * tell that the engine has taken a streaming request (attach, wait) before it sends the next one.
   * A status of 400 or more is read and turned into a DockerApiError. The time (`timeoutMs`) runs
   * until the headers: what follows is the caller's stream.
   */
  async open(method: string, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    const sent = await this.send(method, path, options, options.timeoutMs ?? this.timeouts.streamOpen);
    sent.disarm();
    return sent.res;
  }

  /** A request whose whole answer is JSON (or empty), within `timeoutMs` (default `inspect`). */
  async call<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const sent = await this.send(method, path, options, options.timeoutMs ?? this.timeouts.inspect);
    let buf: Buffer;
    try {
      buf = await readAll(sent.res);
    } catch (e) {
      throw sent.expired() ?? engineError(e, this.endpoint);
    } finally {
      sent.disarm();
    }
    if (buf.length === 0) return undefined as T;
    try {
      return JSON.parse(buf.toString('utf8')) as T;
    } catch {
      return buf.toString('utf8') as T;
    }
  }

  /** The request, on a clock that destroys it (DS0060) when the engine takes longer than `ms`. */
  private send(method: string, path: string, options: RequestOptions, ms: number): Promise<Sent> {
    const { endpoint } = this;
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) qs.set(k, String(v));
    const q = qs.toString();
    const fullPath = q ? `${path}?${q}` : path;
    const body = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const headers: Record<string, string | number> = { ...options.headers };
    if (body && !options.upload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = body.length;
    }
    const base = endpoint.connect
      ? {}
      : endpoint.socketPath
      ? { socketPath: endpoint.socketPath }
      : { host: endpoint.host, port: endpoint.port, ...(endpoint.tls ?? {}) };
    const lib = endpoint.tls ? https : http;
    let expired: DstackError | undefined;
    let res: IncomingMessage | undefined;
    return new Promise((resolve, reject) => {
      const req = lib.request(
        { ...base, agent: this.agent, method, path: fullPath, headers, signal: options.signal },
        (answer) => {
          res = answer;
          const status = answer.statusCode ?? 0;
          if (status < 400) return resolve({ res: answer, disarm: () => clearTimeout(timer), expired: () => expired });
          readAll(answer).then(
            (buf) => reject(new DockerApiError(status, apiMessage(buf, status))),
            (e: unknown) => reject(expired ?? engineError(e, endpoint)),
          ).finally(() => clearTimeout(timer));
        },
      );
      const timer = setTimeout(() => {
        expired = engineTimeout(endpoint, options.what ?? `${method} ${path}`, ms);
        // A socket destroyed, not closed: a frozen engine never answers a FIN either.
        res?.destroy(expired);
        req.destroy(expired);
      }, ms);
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(expired ?? engineError(e, endpoint));
      });
      if (!options.upload) return req.end(body);
      options.upload.on('error', (e) => req.destroy(e));
      options.upload.pipe(req);
    });
  }

  ping(signal?: AbortSignal): Promise<string> {
    return this.call('GET', '/_ping', { signal, timeoutMs: this.timeouts.ping, what: 'ping' });
  }

  info(signal?: AbortSignal): Promise<{ Runtimes?: Record<string, unknown>; CDISpecDirs?: string[] | null }> {
    return this.call('GET', '/info', { signal, what: 'info' });
  }

  imageInspect(image: string, signal?: AbortSignal): Promise<unknown> {
    return this.call('GET', `/images/${encodeURIComponent(image)}/json`, { signal, what: `inspect the image ${image}` });
  }

  createContainer(options: ContainerCreateOptions, signal?: AbortSignal): Promise<{ Id: string; Warnings?: string[] }> {
    return this.call('POST', '/containers/create', { body: options, signal, timeoutMs: this.timeouts.create, what: 'create the container' });
  }

  inspectContainer(id: string, signal?: AbortSignal): Promise<ContainerInspectInfo> {
    return this.call('GET', `/containers/${id}/json`, { signal, what: `inspect the container ${id.slice(0, 12)}` });
  }

  listContainers(labels: readonly string[], signal?: AbortSignal): Promise<ContainerInfo[]> {
    return this.call('GET', '/containers/json', { query: { all: true, filters: JSON.stringify({ label: labels }) }, signal, what: 'list containers' });
  }

  async removeContainer(id: string): Promise<void> {
    try {
      await this.call('DELETE', `/containers/${id}`, { query: { force: true, v: true }, timeoutMs: this.timeouts.remove, what: `remove the container ${id.slice(0, 12)}` });
    } catch (e) {
      // 404: already gone; 409: a removal is already in progress.
      if (!isStatus(e, 404, 409)) throw e;
    }
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * An agent whose connections are streams from `connect` (SSH channels). No keep-alive: a channel is
 * not a socket (no setKeepAlive), and opening one costs a round trip on a connection already open.
 * Node's Agent accepts a connection handed to the callback later (`createConnection(opts, cb)`).
 */
class StreamAgent extends http.Agent {
  constructor(private readonly connectStream: () => Promise<Duplex>) {
    super({ keepAlive: false });
  }

  override createConnection(_options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    this.connectStream().then(
      (stream) => callback?.(null, stream),
      (e: unknown) => callback?.(e instanceof Error ? e : new Error(String(e)), undefined as never),
    );
    return undefined;
  }
}

export function readAll(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks)));
    res.on('error', reject);
    res.on('aborted', () => reject(Object.assign(new Error('connection to the Docker engine lost'), { code: 'ECONNRESET' })));
  });
}

function apiMessage(buf: Buffer, status: number): string {
  const text = buf.toString('utf8').trim();
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof m === 'string') return m;
  } catch {
    // not JSON: use the text as it is
  }
  return text || `HTTP ${status}`;
}
