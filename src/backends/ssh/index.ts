/**
 * The SSH pool: jobs on the user's own machines, reached over SSH, with no daemon to install. The
 * backend id is `ssh:NAME` for the remote NAME of `dstack config ssh`.
 *
 * One SSH connection per host per process, opened by `check` (every host at once) and shared by the
 * jobs; a job takes a slot on a free host with a lease held on the host itself (ssh-host/lease.ts),
 * so several dstack processes never overfill a host. Provisioning is nothing more than that lease;
 * everything after it is the remote machine every SSH-reached backend shares (ssh-host/machine.ts).
 *
 * Opening costs nothing: the configuration is read, and ssh2 loaded, on first use.
 */
import { hostname } from 'node:os';
import type { Backend, BackendHandle, BackendOpenOptions, Capability, ImageDigestOptions, JobContext, Machine, ObservedState } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import type { JobSpec } from '../../engine/types.js';
import { LABEL_JOB, LABEL_RUN } from '../docker/container.js';
import { registryAuthOf } from '../docker/pull.js';
import type { Plugin } from '../plugin.js';
import { connectHost, targetLabel, type SshConnection } from '../ssh-host/connect.js';
import { hostEngine, observeOnHost, reapOnHost, removeJobDir } from '../ssh-host/host-engine.js';
import { layoutOf } from '../ssh-host/host-layout.js';
import { parseTargetLabel, type SshHostSpec } from '../ssh-host/host-spec.js';
import type { LeaseHolder } from '../ssh-host/lease.js';
import { extraLabels, RemoteMachine } from '../ssh-host/machine.js';
import { jobsPerHostOf, sshColumns, type SshRemote } from './remote.js';

/** The host object cache's default bound. */
const DEFAULT_CACHE_BYTES = 10 * 1000 ** 3;
/** observe/reap of a recorded handle: a host that does not answer this fast is taken as lost. */
const LOOKUP_TIMEOUT_MS = 5000;

/**
 * Settings (BackendOpenOptions.settings) the pool reads; none comes from config.json.
 * - `knownHostsPath`: known_hosts to verify host keys against. Default `DSTACK_KNOWN_HOSTS` if set —
 *   a knob for tests that must not touch the user's file — else `~/.ssh/known_hosts`.
 * - `labels`: extra container labels (tests sweep by them).
 * - `cacheBytes`: bound of each host's object cache (default 10 GB).
 * - `leaseTtlSeconds`: the lease ttl. Default `DSTACK_SSH_LEASE_TTL` (seconds) if set — for tests that
 *   must not wait for a dead CLI's lease to expire — else lease.ts's.
 */
export interface SshBackendSettings {
  readonly knownHostsPath?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly cacheBytes?: number;
  readonly leaseTtlSeconds?: number;
}

function readSettings(raw: BackendOpenOptions['settings']): SshBackendSettings {
  const c = raw ?? {};
  const labels = extraLabels(c.labels);
  const ttlFromEnv = Number(process.env.DSTACK_SSH_LEASE_TTL);
  const leaseTtlSeconds = typeof c.leaseTtlSeconds === 'number' ? c.leaseTtlSeconds : Number.isFinite(ttlFromEnv) && ttlFromEnv > 0 ? ttlFromEnv : undefined;
  const knownHostsPath = typeof c.knownHostsPath === 'string' ? c.knownHostsPath : process.env.DSTACK_KNOWN_HOSTS || undefined;
  return {
    labels,
    ...(knownHostsPath ? { knownHostsPath } : {}),
    ...(typeof c.cacheBytes === 'number' ? { cacheBytes: c.cacheBytes } : {}),
    ...(leaseTtlSeconds ? { leaseTtlSeconds } : {}),
  };
}

interface HostStatus {
  readonly host: SshHostSpec;
  readonly error?: DstackError;
}

export class SshBackend implements Backend {
  readonly id: string;
  readonly home: string;
  private readonly name: string;
  private readonly settings: SshBackendSettings;
  private readonly remoteConfig: SshRemote;
  private readonly connections = new Map<string, Promise<SshConnection>>();
  private checked: Promise<HostStatus[]> | undefined;
  /** Said once, to the first job: hosts left out, hosts trusted on first use. */
  private readonly pending: string[] = [];
  /** How to pull each image the fingerprints were computed with on another host: its registry digests. */
  private readonly pullAs = new Map<string, readonly string[]>();
  private closed = false;
  /** What each job sent, by job id (tests and benchmarks read it). */
  readonly sent = new Map<string, { readonly bytes: number; readonly objects: number }>();

  constructor(options: BackendOpenOptions<SshRemote>) {
    if (!options.remote) throw new Error('the ssh backend needs a remote (ssh:NAME)');
    this.home = options.home;
    this.name = options.remote.name;
    this.remoteConfig = options.remote;
    this.settings = readSettings(options.settings);
    this.id = `ssh:${this.name}`;
  }


  /** The pooled connection to `host`; a new one when the last one died. */
  connection(host: SshHostSpec, options: { readonly signal?: AbortSignal; readonly timeoutMs?: number } = {}): Promise<SshConnection> {
    if (this.closed) return Promise.reject(new Error('the ssh backend is closed'));
    const key = targetLabel(host);
    const existing = this.connections.get(key);
    if (existing) return existing;
    const { identity } = this.remoteConfig;
    const made = connectHost(host, {
      ...(identity ? { identity } : {}),
      ...(this.settings.knownHostsPath ? { knownHostsPath: this.settings.knownHostsPath } : {}),
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      notify: (m) => this.pending.push(m),
    });
    this.connections.set(key, made);
    const forget = (): void => {
      if (this.connections.get(key) === made) this.connections.delete(key);
    };
    made.then(
      (conn) => {
        conn.onClose(forget);
        if (this.closed) void conn.close();
      },
      forget,
    );
    return made;
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
    throw new DstackError(first.code, `no host of the pool '${this.name}' is usable:\n${failed.map((s) => `  ${s.error.message}`).join('\n')}`, {
      ...(first.hint ? { hint: first.hint } : {}),
    });
  }

  private statuses(signal: AbortSignal): Promise<HostStatus[]> {
    if (!this.checked) {
      const p = Promise.all(this.remoteConfig.hosts.map((host) => this.status(host, signal)));
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

  private async status(host: SshHostSpec, signal: AbortSignal): Promise<HostStatus> {
    try {
      const conn = await this.connection(host, { signal });
      await hostEngine(conn).ensureDocker(signal);
      return { host };
    } catch (e) {
      signal.throwIfAborted();
      if (e instanceof DstackError) return { host, error: e };
      throw e;
    }
  }

  private async usable(signal: AbortSignal): Promise<SshHostSpec[]> {
    await this.check(signal);
    return (await this.statuses(signal)).filter((s) => !s.error).map((s) => s.host);
  }

  /** The image as the first usable host holds it; its registry digests are kept for the other hosts. */
  async imageDigest(spec: JobSpec, options: ImageDigestOptions): Promise<string> {
    const [host] = await this.usable(options.signal);
    const conn = await this.connection(host!, { signal: options.signal });
    const auth = registryAuthOf(spec, options.secrets);
    const facts = await hostEngine(conn).images.ensure(spec.image, { auth, notify: options.notify, signal: options.signal, pull: options.pull });
    this.pullAs.set(facts.id, facts.repoDigests);
    return facts.id;
  }

  async provision(ctx: JobContext): Promise<Machine> {
    const hosts = await this.usable(ctx.signal);
    this.tell(ctx);
    const { acquireHost } = await import('../ssh-host/lease.js');
    const got = await acquireHost({
      hosts,
      connect: (h) => this.connection(h),
      jobsPerHost: jobsPerHostOf(this.remoteConfig),
      holder: { run: ctx.run, job: ctx.job, pid: process.pid, hostname: hostname() },
      ...(this.settings.leaseTtlSeconds ? { ttlSeconds: this.settings.leaseTtlSeconds } : {}),
      signal: ctx.signal,
      notify: (message) => ctx.notify({ kind: 'info', message }),
      onStale: (stale, connection) => this.reapStale(stale, connection),
    });
    this.tell(ctx);
    ctx.notify({ kind: 'info', message: `running on ${got.connection.label}` });
    const machine = new RemoteMachine({
      remote: this.name,
      engine: hostEngine(got.connection),
      hold: got.lease,
      home: this.home,
      labels: this.settings.labels ?? {},
      cacheBytes: this.settings.cacheBytes ?? DEFAULT_CACHE_BYTES,
      pullAs: (digest) => this.pullAs.get(digest) ?? [],
      onSent: (s) => this.sent.set(ctx.job, s),
    });
    try {
      await machine.record(ctx);
    } catch (e) {
      await machine.teardown().catch(() => undefined);
      throw e;
    }
    return machine;
  }

  private tell(ctx: JobContext): void {
    for (const m of this.pending.splice(0)) ctx.notify({ kind: 'info', message: m });
  }

  /** What a dead holder left on a host: its containers (by label) and its job folder. */
  private async reapStale(stale: LeaseHolder, connection: SshConnection): Promise<void> {
    const engine = hostEngine(connection);
    const found = await engine.client.listContainers([`${LABEL_JOB}=${stale.job}`, `${LABEL_RUN}=${stale.run}`]);
    await Promise.all(found.map((c) => engine.client.removeContainer(c.Id)));
    const layout = await layoutOf(connection);
    await removeJobDir(connection, layout.jobDir(stale.job));
  }

  /** The connection for a recorded handle, or undefined when its host does not answer. */
  private async handleConnection(handle: BackendHandle): Promise<SshConnection | undefined> {
    const host = typeof handle.host === 'string' ? parseTargetLabel(handle.host) : undefined;
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
    if (typeof handle.container !== 'string' || !handle.container) return { state: 'gone' };
    const conn = await this.handleConnection(handle);
    return conn ? observeOnHost(conn, handle) : { state: 'gone' };
  }

  async reap(handle: BackendHandle): Promise<void> {
    const conn = await this.handleConnection(handle);
    if (!conn) {
      throw new DstackError('DS0205', `cannot reach ${String(handle.host)} to remove what job left there`, {
        hint: 'it is removed by the next dstack run that takes a slot on that host',
      });
    }
    await reapOnHost(conn, handle);
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.connections.values()];
    this.connections.clear();
    this.checked = undefined;
    await Promise.all(all.map((c) => c.then((conn) => conn.close()).catch(() => undefined)));
  }
}

export const sshPlugin: Plugin<SshRemote> = {
  kind: 'ssh',
  describe: 'your own machines, reached over SSH',
  configSchema: async () => (await import('./remote-schema.js')).sshRemoteSchema,
  addExample: 'dstack config ssh --name NAME --host user@host[:port]',
  columns: sshColumns,
  commands: async () => [(await import('./config-command.js')).ConfigSshCommand],
  open: (options) => new SshBackend(options),
};
