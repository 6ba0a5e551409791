/**
 * The backend every cloud is: an InstanceProvider (instance.ts) for what is the cloud's — launching,
 * finding, terminating instances — and everything after, the same as the SSH pool does on a host:
 *
 *   keys (this home's client key, a fresh host key per instance) → launch (handle recorded at once)
 *   → address → SSH, verified against the pinned host key, retried while the instance boots →
 *   the cloud's own boot finished (`ready`, when the provider has one; then SSH again) → Docker
 *   answers → the remote machine (ssh-host/machine.ts: image pinned, stage, start, logs, tunnels,
 *   collect) with a heartbeat renewing the instance's dead-man switch → terminate.
 *
 * A lost SSH connection asks the cloud what happened: a `preempted` instance ends the job
 * `interrupted`, anything else `failed`. `observe` and `reap` work from recorded handles alone, in
 * a process that never saw the instance: the handle carries the host and its public host key.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend, BackendHandle, Capability, ImageDigestOptions, JobContext, Machine, MachineOffer, ObservedState, OwnedMachine } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import type { JobSpec } from '../../engine/types.js';
import { connectHost, targetLabel, type SshConnection } from './connect.js';
import { bootScript, Heartbeat } from './deadman.js';
import { hostEngine, observeOnHost } from './host-engine.js';
import { publicKeyBlob } from './host-keys.js';
import { parseTargetLabel, type SshHostSpec } from './host-spec.js';
import type { InstanceProvider, InstanceState } from './instance.js';
import { clientKey, newHostKey, type ClientKey } from './instance-keys.js';
import { InstanceMachine } from './instance-machine.js';
import { RemoteMachine } from './machine.js';

/**
 * Settings (BackendOpenOptions.settings) every instance backend reads; none comes from config.json.
 * - `sshWaitSeconds`: how long provision waits for SSH and Docker once the instance has an address (default 300).
 * - `heartbeatTtlSeconds`: the dead-man switch's ttl (default 300): how long an instance outlives a dead dstack.
 * - `labels`: extra container labels (tests sweep by them).
 * - `cacheBytes`: bound of the instance's object cache (default 10 GB).
 */
export interface InstanceSettings {
  readonly sshWaitSeconds?: number;
  readonly heartbeatTtlSeconds?: number;
  readonly labels?: Readonly<Record<string, string>>;
  readonly cacheBytes?: number;
}

export interface InstanceBackendOptions {
  readonly home: string;
  /** The remote's name, for handles and container labels. */
  readonly remote: string;
  readonly provider: InstanceProvider;
  readonly settings?: InstanceSettings;
}

const DEFAULT_CACHE_BYTES = 10 * 1000 ** 3;
/** observe of a recorded handle: an instance that does not answer this fast is taken as lost. */
const LOOKUP_TIMEOUT_MS = 10_000;
/** How often a fresh instance is asked whether its Docker engine has started. */
const DOCKER_POLL_MS = 500;

export class InstanceBackend implements Backend {
  readonly id: string;
  private readonly o: InstanceBackendOptions;
  private readonly provider: InstanceProvider;
  /** How to pull each image the fingerprints were computed with (`name@sha256:…`). */
  private readonly pullAs = new Map<string, readonly string[]>();

  constructor(options: InstanceBackendOptions) {
    this.o = options;
    this.provider = options.provider;
    this.id = options.provider.id;
  }

  private get sshWaitMs(): number {
    return (this.o.settings?.sshWaitSeconds ?? 300) * 1000;
  }

  private get ttlSeconds(): number {
    return this.o.settings?.heartbeatTtlSeconds ?? 300;
  }

  supports(spec: JobSpec): Capability {
    return this.provider.supports(spec);
  }

  check(signal: AbortSignal): Promise<void> {
    return this.provider.check(signal);
  }

  async imageDigest(spec: JobSpec, options: ImageDigestOptions): Promise<string> {
    const identity = await this.provider.imageDigest(spec, options);
    this.pullAs.set(identity.digest, identity.pullAs);
    return identity.digest;
  }

  /**
   * Launches, then waits for SSH and Docker; whatever fails after the launch terminates the
   * instance here (and the executor reaps the recorded handle too: termination is idempotent).
   */
  async provision(ctx: JobContext): Promise<Machine> {
    const [client, hostKey] = await Promise.all([clientKey(this.o.home), newHostKey()]);
    let recorded: BackendHandle | undefined;
    // Every handle of the job carries the public host key: a later process verifies with it.
    const launchCtx: JobContext = {
      ...ctx,
      recordHandle: (h) => {
        recorded = { ...h, hostKey: hostKey.publicKey };
        ctx.recordHandle(recorded);
      },
    };
    try {
      const boot = {
        authorizedKey: client.publicKey,
        hostKey,
        bootScript: bootScript({ hostKey, deadMan: { ttlSeconds: this.ttlSeconds, graceSeconds: this.sshWaitMs / 1000 + this.ttlSeconds } }),
      };
      const launched = await this.provider.launch(launchCtx, boot);
      if (!recorded) launchCtx.recordHandle(launched);
      const instance = recorded!;
      const target = await this.provider.address(instance, ctx.signal);
      let connection = await this.connectWhenUp(target, client, instance, ctx.signal);
      if (this.provider.ready) {
        try {
          await this.provider.ready(connection, ctx.signal);
        } finally {
          await connection.close();
        }
        connection = await this.connectWhenUp(target, client, instance, ctx.signal);
      }
      return await this.machineOn(connection, instance, ctx);
    } catch (e) {
      if (recorded) await this.provider.terminate(recorded).catch(() => undefined);
      throw e;
    }
  }

  /** The remote machine on a connected instance, once its Docker answers; the heartbeat starts now. */
  private async machineOn(connection: SshConnection, instance: BackendHandle, ctx: JobContext): Promise<Machine> {
    try {
      await this.waitForDocker(connection, instance, ctx.signal);
      ctx.notify({ kind: 'info', message: `running on ${connection.label}` });
      const remote = new RemoteMachine({
        remote: this.id,
        engine: hostEngine(connection),
        hold: new Heartbeat(connection, Math.max(1000, Math.floor((this.ttlSeconds * 1000) / 3))),
        home: this.o.home,
        labels: this.o.settings?.labels ?? {},
        cacheBytes: this.o.settings?.cacheBytes ?? DEFAULT_CACHE_BYTES,
        pullAs: (digest) => this.pullAs.get(digest) ?? [],
        handle: instance,
      });
      const machine = new InstanceMachine({ remote, connection, instance, provider: this.provider });
      await remote.record(ctx);
      return machine;
    } catch (e) {
      await connection.close();
      throw e;
    }
  }

  /**
   * SSH to a booting instance: refused connections, timeouts, a host key not installed yet and a
   * login not authorized yet are all tried again until `sshWaitSeconds`, unless the cloud says the
   * instance has ended. Only the pinned host key is ever accepted.
   */
  private async connectWhenUp(target: SshHostSpec, client: ClientKey, instance: BackendHandle, signal: AbortSignal): Promise<SshConnection> {
    const deadline = Date.now() + this.sshWaitMs;
    const hostKey = publicKeyBlob(String(instance.hostKey));
    let pause = 250;
    for (let attempt = 1; ; attempt++) {
      try {
        return await connectHost(target, { identity: client.path, hostKey, timeoutMs: 10_000, signal });
      } catch (e) {
        signal.throwIfAborted();
        if (attempt % 4 === 0) await this.assertAlive(instance, targetLabel(target));
        if (Date.now() + pause > deadline) {
          throw new DstackError('DS0215', `${this.id}: the instance at ${targetLabel(target)} did not answer over SSH within ${this.sshWaitMs / 1000} s: ${(e as Error).message}`, {
            hint: 'it was terminated; check the cloud console for its boot log, and that SSH (port 22) is reachable from here',
            cause: e,
          });
        }
        await sleep(pause, undefined, { signal });
        // Capped low: the instance's sshd comes up at an unknown moment and each second waited past it is ours.
        pause = Math.min(pause * 2, 1000);
      }
    }
  }

  /** Docker on a fresh instance may start after sshd: asked until `sshWaitSeconds`. */
  private async waitForDocker(connection: SshConnection, instance: BackendHandle, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.sshWaitMs;
    const engine = hostEngine(connection);
    for (;;) {
      try {
        return await engine.ensureDocker(signal);
      } catch (e) {
        signal.throwIfAborted();
        if (Date.now() + DOCKER_POLL_MS > deadline || connection.closed) throw e;
        await this.assertAlive(instance, connection.label);
        await sleep(DOCKER_POLL_MS, undefined, { signal });
      }
    }
  }

  private async assertAlive(instance: BackendHandle, label: string): Promise<void> {
    const state = await this.provider.state(instance);
    if (state === 'running' || state === 'pending') return;
    throw new DstackError('DS0216', `${this.id}: the instance at ${label} ended (${state}) before the job could start`, {
      hint: state === 'preempted' ? 'the cloud took the spot instance back; run again, or without `interruptible`' : 'run again; if it keeps happening, check the cloud console',
    });
  }

  /**
   * `gone` unless the cloud says the instance runs and its container can be seen running there
   * (a recorded handle from another process: connected to with the pinned host key it carries).
   */
  async observe(handle: BackendHandle): Promise<ObservedState> {
    const state: InstanceState = await this.provider.state(handle).catch(() => 'gone' as const);
    if (state !== 'running' || typeof handle.container !== 'string' || !handle.container) return { state: 'gone' };
    const target = typeof handle.host === 'string' ? parseTargetLabel(handle.host) : undefined;
    if (!target || typeof handle.hostKey !== 'string') return { state: 'gone' };
    let connection: SshConnection | undefined;
    try {
      const client = await clientKey(this.o.home);
      connection = await connectHost(target, { identity: client.path, hostKey: publicKeyBlob(handle.hostKey), timeoutMs: LOOKUP_TIMEOUT_MS });
      return await observeOnHost(connection, handle);
    } catch {
      return { state: 'gone' };
    } finally {
      await connection?.close();
    }
  }

  offers(spec: JobSpec, signal: AbortSignal): Promise<readonly MachineOffer[]> {
    return this.provider.offers ? this.provider.offers(spec, signal) : Promise.resolve([]);
  }

  /** This home's instances that are not terminated yet, for sweeping and listing. */
  async owned(): Promise<readonly OwnedMachine[]> {
    return (await this.provider.list()).map((i) => ({
      handle: i.handle,
      id: i.id ?? JSON.stringify(i.handle),
      state: i.state,
      ...(i.job ? { job: i.job } : {}),
      ...(i.detail ? { detail: i.detail } : {}),
    }));
  }

  /** Terminates the instance a handle names: everything of the job goes with it. Idempotent. */
  async reap(handle: BackendHandle): Promise<void> {
    await this.provider.terminate(handle);
  }

  async close(): Promise<void> {
    await this.provider.close?.();
  }
}
