/**
 * The SSH pool: jobs on the user's own machines, reached over SSH, with no daemon to install. The
 * backend id is `ssh:NAME` for the remote NAME of `dstack config ssh`.
 *
 * One SSH connection per host per process, opened by `check` (every host at once) and shared by the
 * jobs; a job takes a slot on a free host with a lease held on the host itself (lease.ts), so
 * several dstack processes never overfill a host. Provisioning is nothing more than that lease.
 *
 * Opening costs nothing: the configuration is read, and ssh2 loaded, on first use.
 */
import { hostname } from 'node:os';
import type {
  Backend,
  BackendHandle,
  BackendOpenOptions,
  BackendPlugin,
  Capability,
  ImageDigestOptions,
  JobContext,
  Machine,
  ObservedState,
} from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import type { JobSpec } from '../../engine/types.js';
import { LABEL_HOME, LABEL_JOB, LABEL_RUN } from '../docker/container.js';
import type { DockerClient } from '../docker/docker.js';
import { observeContainer } from '../docker/job-container.js';
import { ImageCache, registryAuthOf } from '../docker/pull.js';
import { findRemote, type SshHostSpec, type SshRemote } from './config.js';

async function findSshRemote(home: string, name: string): Promise<SshRemote> {
  const found = await findRemote(home, name);
  if (found.kind !== 'ssh') throw new DstackError('DS0268', `remote '${name}' is a ${found.kind} bucket: it stores runs, it does not run them`, { hint: 'run with --remote NAME of a pool (see `dstack config list`)' });
  return found;
}
import { connectHost, targetLabel, type SshConnection } from '../ssh-host/connect.js';
import { pingHostDocker, remoteDocker } from '../ssh-host/docker-remote.js';
import { isJobDir, layoutOf } from '../ssh-host/host-layout.js';
import type { LeaseHolder } from '../ssh-host/lease.js';
import { LABEL_HOST, LABEL_REMOTE, RemoteMachine, type HostEngine } from '../ssh-host/machine.js';
import { shellQuote } from '../ssh-host/shell.js';

/** The host object cache's default bound. */
const DEFAULT_CACHE_BYTES = 10 * 1000 ** 3;
/** observe/reap of a recorded handle: a host that does not answer this fast is taken as lost. */
const LOOKUP_TIMEOUT_MS = 5000;

export interface SshBackendConfig {
  /** The remote's name (`ssh:NAME`); its hosts come from the dstack config unless given here. */
  readonly name: string;
  /** The remote itself, bypassing the config file (tests). */
  readonly remote?: SshRemote;
  /**
   * known_hosts to verify host keys against. Default: `DSTACK_KNOWN_HOSTS` if set — a knob for tests
   * that must not touch the user's file — else `~/.ssh/known_hosts`.
   */
  readonly knownHostsPath?: string;
  /** Extra container labels (tests sweep by them). */
  readonly labels?: Readonly<Record<string, string>>;
  /** Bound of each host's object cache, in bytes (default 10 GB). */
  readonly cacheBytes?: number;
  /**
   * Lease ttl. Default: `DSTACK_SSH_LEASE_TTL` (seconds) if set — a knob for tests that must not wait
   * for a dead CLI's lease to expire, as the remote's config has no such field — else lease.ts's.
   */
  readonly leaseTtlSeconds?: number;
}

function readConfigOption(options: BackendOpenOptions): SshBackendConfig {
  const c = (options.config ?? {}) as Record<string, unknown>;
  if (typeof c.name !== 'string' || !c.name) throw new Error('the ssh backend needs a remote name (ssh:NAME)');
  const labels: Record<string, string> = {};
  if (c.labels && typeof c.labels === 'object') {
    for (const [k, v] of Object.entries(c.labels)) if (typeof v === 'string' && ![LABEL_HOME, LABEL_RUN, LABEL_JOB, LABEL_HOST, LABEL_REMOTE].includes(k)) labels[k] = v;
  }
  return {
    name: c.name,
    ...(c.remote && typeof c.remote === 'object' ? { remote: c.remote as SshRemote } : {}),
    ...(typeof c.knownHostsPath === 'string' ? { knownHostsPath: c.knownHostsPath } : {}),
    labels,
    ...(typeof c.cacheBytes === 'number' ? { cacheBytes: c.cacheBytes } : {}),
    ...(typeof c.leaseTtlSeconds === 'number' ? { leaseTtlSeconds: c.leaseTtlSeconds } : {}),
  };
}

interface HostStatus {
  readonly host: SshHostSpec;
  readonly error?: DstackError;
}

/** `user@host:port` (as recorded in handles) → the host. */
function parseLabel(label: string): SshHostSpec | undefined {
  const at = label.lastIndexOf('@');
  const colon = label.lastIndexOf(':');
  if (at <= 0 || colon <= at) return undefined;
  const port = Number(label.slice(colon + 1));
  if (!Number.isInteger(port)) return undefined;
  return { user: label.slice(0, at), host: label.slice(at + 1, colon), port };
}

export class SshBackend implements Backend {
  readonly id: string;
  readonly home: string;
  private readonly config: SshBackendConfig;
  private remoteValue: Promise<SshRemote> | undefined;
  private readonly connections = new Map<string, Promise<SshConnection>>();
  private readonly engines = new WeakMap<SshConnection, HostEngine>();
  private checked: Promise<HostStatus[]> | undefined;
  /** Said once, to the first job: hosts left out, hosts trusted on first use. */
  private readonly pending: string[] = [];
  private closed = false;
  /** What each job sent, by job id (tests and benchmarks read it). */
  readonly sent = new Map<string, { readonly bytes: number; readonly objects: number }>();

  constructor(options: BackendOpenOptions) {
    this.home = options.home;
    this.config = readConfigOption(options);
    this.id = `ssh:${this.config.name}`;
  }

  private remote(): Promise<SshRemote> {
    if (!this.remoteValue) {
      const p = this.config.remote ? Promise.resolve(this.config.remote) : findSshRemote(this.home, this.config.name);
      p.catch(() => (this.remoteValue = undefined));
      this.remoteValue = p;
    }
    return this.remoteValue;
  }

  /** The pooled connection to `host`; a new one when the last one died. */
  connection(host: SshHostSpec, options: { readonly signal?: AbortSignal; readonly timeoutMs?: number } = {}): Promise<SshConnection> {
    if (this.closed) return Promise.reject(new Error('the ssh backend is closed'));
    const key = targetLabel(host);
    let c = this.connections.get(key);
    if (!c) {
      c = this.remote().then((remote) =>
        connectHost(host, {
          ...(remote.identity ? { identity: remote.identity } : {}),
          ...(this.knownHostsPath() ? { knownHostsPath: this.knownHostsPath() } : {}),
          ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
          ...(options.signal ? { signal: options.signal } : {}),
          notify: (m) => this.pending.push(m),
        }),
      );
      const made = c;
      this.connections.set(key, made);
      made.then(
        (conn) => {
          conn.onClose(() => {
            if (this.connections.get(key) === made) this.connections.delete(key);
          });
          if (this.closed) void conn.close();
        },
        () => {
          if (this.connections.get(key) === made) this.connections.delete(key);
        },
      );
    }
    return c;
  }

  private leaseTtlSeconds(): number | undefined {
    if (this.config.leaseTtlSeconds) return this.config.leaseTtlSeconds;
    const fromEnv = Number(process.env.DSTACK_SSH_LEASE_TTL);
    return Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : undefined;
  }

  private knownHostsPath(): string | undefined {
    return this.config.knownHostsPath ?? (process.env.DSTACK_KNOWN_HOSTS || undefined);
  }

  /** The host's engine over this connection. */
  engine(connection: SshConnection): HostEngine {
    let e = this.engines.get(connection);
    if (!e) {
      const client: DockerClient = remoteDocker(connection);
      let pinged: Promise<void> | undefined;
      e = {
        connection,
        client,
        images: new ImageCache(() => client),
        ensureDocker: (signal) => {
          if (!pinged) {
            const p = pingHostDocker(client, connection, signal);
            p.catch(() => (pinged = undefined));
            pinged = p;
          }
          return pinged;
        },
      };
      this.engines.set(connection, e);
      connection.onClose(() => client.close());
    }
    return e;
  }

  supports(_spec: JobSpec): Capability {
    // GPUs depend on each host's engine, known only after a round trip: bootstrap checks them.
    return { ok: true };
  }

  /**
   * Connects to every host at once and asks each one's Docker for a ping. Fails (with the first
   * host's error, all of them listed) only when no host is usable; otherwise the others are left out
   * and announced to the first job.
   */
  async check(signal: AbortSignal): Promise<void> {
    const statuses = await this.statuses(signal);
    if (statuses.some((s) => !s.error)) return;
    const failed = statuses.filter((s): s is HostStatus & { error: DstackError } => s.error !== undefined);
    const first = failed[0]!.error;
    if (failed.length === 1) throw first;
    throw new DstackError(first.code, `no host of the pool '${this.config.name}' is usable:\n${failed.map((s) => `  ${s.error.message}`).join('\n')}`, {
      ...(first.hint ? { hint: first.hint } : {}),
    });
  }

  private statuses(signal: AbortSignal): Promise<HostStatus[]> {
    if (!this.checked) {
      const p = this.remote().then((remote) =>
        Promise.all(
          remote.hosts.map(async (host): Promise<HostStatus> => {
            try {
              const conn = await this.connection(host, { signal });
              await this.engine(conn).ensureDocker(signal);
              return { host };
            } catch (e) {
              signal.throwIfAborted();
              if (e instanceof DstackError) return { host, error: e };
              throw e;
            }
          }),
        ),
      );
      p.then(
        (all) => {
          const bad = all.filter((s) => s.error);
          // Every host failing is the caller's error; a later call tries them all again.
          if (bad.length === all.length) this.checked = undefined;
          else for (const s of bad) this.pending.push(`host ${targetLabel(s.host)} is left out of the pool for this run: ${s.error!.message}`);
        },
        () => (this.checked = undefined),
      );
      this.checked = p;
    }
    return this.checked;
  }

  private async usable(signal: AbortSignal): Promise<SshHostSpec[]> {
    await this.check(signal);
    return (await this.statuses(signal)).filter((s) => !s.error).map((s) => s.host);
  }

  async imageDigest(spec: JobSpec, options: ImageDigestOptions): Promise<string> {
    const [host] = await this.usable(options.signal);
    const conn = await this.connection(host!, { signal: options.signal });
    const auth = registryAuthOf(spec, options.secrets);
    const facts = await this.engine(conn).images.ensure(spec.image, { auth, notify: options.notify, signal: options.signal, pull: options.pull });
    return facts.id;
  }

  async provision(ctx: JobContext): Promise<Machine> {
    const hosts = await this.usable(ctx.signal);
    for (const m of this.pending.splice(0)) ctx.notify({ kind: 'info', message: m });
    const remote = await this.remote();
    const { acquireHost } = await import('../ssh-host/lease.js');
    const got = await acquireHost({
      hosts,
      connect: (h) => this.connection(h),
      jobsPerHost: remote.jobsPerHost,
      holder: { run: ctx.run, job: ctx.job, pid: process.pid, hostname: hostname() },
      ...(this.leaseTtlSeconds() ? { ttlSeconds: this.leaseTtlSeconds() } : {}),
      signal: ctx.signal,
      notify: (message) => ctx.notify({ kind: 'info', message }),
      onStale: (stale, connection) => this.reapStale(stale, connection),
    });
    for (const m of this.pending.splice(0)) ctx.notify({ kind: 'info', message: m });
    ctx.notify({ kind: 'info', message: `running on ${got.connection.label}` });
    return new RemoteMachine({
      remote: this.config.name,
      engine: this.engine(got.connection),
      lease: got.lease,
      ctx,
      home: this.home,
      labels: this.config.labels ?? {},
      cacheBytes: this.config.cacheBytes ?? DEFAULT_CACHE_BYTES,
      onSent: (s) => this.sent.set(ctx.job, s),
    });
  }

  /** What a dead holder left on a host: its containers (by label) and its job folder. */
  private async reapStale(stale: LeaseHolder, connection: SshConnection): Promise<void> {
    const engine = this.engine(connection);
    const found = await engine.client.listContainers([`${LABEL_JOB}=${stale.job}`, `${LABEL_RUN}=${stale.run}`]);
    await Promise.all(found.map((c) => engine.client.removeContainer(c.Id)));
    const layout = await layoutOf(connection);
    await this.removeJobDir(connection, layout.jobDir(stale.job));
  }

  private async removeJobDir(connection: SshConnection, dir: string): Promise<void> {
    const layout = await layoutOf(connection);
    if (!isJobDir(layout, dir)) return;
    const r = await connection.exec(`rm -rf -- ${shellQuote(dir)}`);
    if (r.code !== 0) throw new DstackError('DS0209', `could not remove ${dir} on ${connection.label}: ${r.stderr.toString('utf8').trim()}`);
  }

  /** The connection for a recorded handle, or undefined when its host does not answer. */
  private async handleConnection(handle: BackendHandle): Promise<SshConnection | undefined> {
    const host = typeof handle.host === 'string' ? parseLabel(handle.host) : undefined;
    if (!host) return undefined;
    try {
      return await this.connection(host, { timeoutMs: LOOKUP_TIMEOUT_MS });
    } catch {
      return undefined;
    }
  }

  /**
   * A host that does not answer is taken as lost with its job (`gone`): `ps` must never show a run
   * as running when nothing can be seen running it.
   */
  async observe(handle: BackendHandle): Promise<ObservedState> {
    const id = handle.container;
    if (typeof id !== 'string' || !id) return { state: 'gone' };
    const conn = await this.handleConnection(handle);
    if (!conn) return { state: 'gone' };
    try {
      return await observeContainer(this.engine(conn).client, id);
    } catch {
      return { state: 'gone' };
    }
  }

  async reap(handle: BackendHandle): Promise<void> {
    const conn = await this.handleConnection(handle);
    if (!conn) {
      throw new DstackError('DS0205', `cannot reach ${String(handle.host)} to remove what job left there`, {
        hint: 'it is removed by the next dstack run that takes a slot on that host',
      });
    }
    const id = handle.container;
    if (typeof id === 'string' && id) await this.engine(conn).client.removeContainer(id);
    if (typeof handle.jobDir === 'string') await this.removeJobDir(conn, handle.jobDir);
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.connections.values()];
    this.connections.clear();
    this.checked = undefined;
    await Promise.all(all.map((c) => c.then((conn) => conn.close()).catch(() => undefined)));
  }
}

export const sshPlugin: BackendPlugin = {
  name: 'ssh',
  open: (options) => new SshBackend(options),
};

