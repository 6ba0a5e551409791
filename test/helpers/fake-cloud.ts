/**
 * A fake cloud for the tests, plugged in exactly as a real cloud is: an InstanceProvider whose
 * "instances" are SSH host containers (test/helpers/ssh-hosts.ts), made a plugin by `instancePlugin`
 * with a remote schema of its own and a `dstack config fakecloud` command
 * (fake-cloud-command.ts). Nothing in src/ knows it.
 *
 * An instance: a host container named `dstack-fakecloud-<pid>-<n>` that runs the launch's boot
 * script as root before sshd (its host key, and the dead-man switch; `shutdown` in it ends it), on a
 * loopback port chosen at launch. Its state comes from the engine and a marker file, so a second
 * backend opened on the same home — another process — sees what the first launched:
 * running/exited container → running/terminated; a `preempted` marker → preempted; none → gone.
 * `preempt` plays the cloud taking a spot instance back: the container and the job containers it
 * ran are killed, and the state says so.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as t from 'typanion';
import type { BackendHandle, BackendOpenOptions, Capability, ImageDigestOptions, JobContext, RemoteConfig } from '../../src/engine/backend.js';
import { DstackError } from '../../src/engine/errors.js';
import type { JobSpec } from '../../src/engine/types.js';
import type { Plugin } from '../../src/backends/plugin.js';
import type { SshHostSpec } from '../../src/backends/ssh-host/host-spec.js';
import type { ImageIdentity, InstanceLaunch, InstanceProvider, InstanceState, OwnedInstance } from '../../src/backends/ssh-host/instance.js';
import { instancePlugin } from '../../src/backends/ssh-host/instance-plugin.js';
import { testDocker } from './docker.js';
import { docker, freePort, HOSTS_ROOT, removeHost, startHost, waitForSsh } from './ssh-hosts.js';

export interface FakeCloudRemote extends RemoteConfig {
  readonly kind: 'fakecloud';
  /** Shown by `dstack config list`. */
  readonly region: string;
  /** The most CPUs an instance type offers. */
  readonly maxCpu?: number;
}

export const fakeCloudSchema: t.StrictValidator<unknown, FakeCloudRemote> = t.isObject({
  name: t.isString(),
  kind: t.isLiteral('fakecloud'),
  region: t.cascade(t.isString(), t.hasMinLength(1)),
  maxCpu: t.isOptional(t.cascade(t.isNumber(), t.isAtLeast(1))),
});

const INSTANCE_LABEL = 'dstack.fakecloud';
let launched = 0;

export class FakeCloud implements InstanceProvider {
  readonly id: string;

  constructor(
    readonly remote: FakeCloudRemote,
    private readonly home: string,
  ) {
    this.id = `fakecloud:${remote.name}`;
  }

  supports(spec: JobSpec): Capability {
    const gpu = spec.resources.gpu;
    if (gpu && gpu.count > 0) return { ok: false, reason: `fakecloud offers no GPU instances in ${this.remote.region}: ask for gpu: 0` };
    const cpu = spec.resources.cpu ?? 0;
    if (this.remote.maxCpu !== undefined && cpu > this.remote.maxCpu) {
      return { ok: false, reason: `no fakecloud instance type has ${cpu} CPUs (at most ${this.remote.maxCpu} in ${this.remote.region})` };
    }
    return { ok: true };
  }

  async check(signal: AbortSignal): Promise<void> {
    await testDocker().ping(signal);
  }

  /** The fake's registry is this machine's engine. */
  async imageDigest(spec: JobSpec, _options: ImageDigestOptions): Promise<ImageIdentity> {
    const info = (await testDocker().imageInspect(spec.image)) as { Id: string; RepoDigests?: string[] };
    return { digest: info.Id, pullAs: info.RepoDigests ?? [] };
  }

  async launch(ctx: JobContext, boot: InstanceLaunch): Promise<BackendHandle> {
    const name = `dstack-fakecloud-${process.pid}-${++launched}`;
    const handle = { instance: name, port: await freePort() };
    // As a cloud answers RunInstances with an id before the instance runs.
    ctx.recordHandle(handle);
    await startHost({
      name,
      port: handle.port,
      bootScript: boot.bootScript,
      authorizedKey: boot.authorizedKey,
      labels: [`${INSTANCE_LABEL}=${this.home}`, `dstack.fakecloud.job=${ctx.job}`],
      wait: false,
    });
    return handle;
  }

  async address(handle: BackendHandle, signal: AbortSignal): Promise<SshHostSpec> {
    signal.throwIfAborted();
    const state = await this.state(handle);
    if (state !== 'running' && state !== 'pending') {
      throw new DstackError('DS0216', `fakecloud instance ${String(handle.instance)} ended (${state}) before it had an address`);
    }
    await waitForSsh(Number(handle.port), String(handle.instance)).catch(() => undefined);
    return { user: 'root', host: '127.0.0.1', port: Number(handle.port) };
  }

  async state(handle: BackendHandle): Promise<InstanceState> {
    const name = String(handle.instance);
    if (existsSync(join(HOSTS_ROOT, name, 'preempted'))) return 'preempted';
    const status = await docker('inspect', '-f', '{{.State.Status}}', name).catch(() => undefined);
    if (status === undefined) return 'gone';
    if (status === 'running') return 'running';
    if (status === 'created' || status === 'restarting') return 'pending';
    return 'terminated';
  }

  /** The instance, and the job containers it ran on this machine's engine (they would die with a real one). */
  async terminate(handle: BackendHandle): Promise<void> {
    const name = String(handle.instance);
    await killJobs(Number(handle.port), 'rm');
    await removeHost({ name, container: name });
  }

  async list(): Promise<readonly OwnedInstance[]> {
    const out = await docker('ps', '-a', '--filter', `label=${INSTANCE_LABEL}=${this.home}`, '--format', '{{.Names}}');
    const names = out.split('\n').filter(Boolean);
    return Promise.all(
      names.map(async (name) => {
        const port = Number(await docker('inspect', '-f', '{{range .Config.Env}}{{println .}}{{end}}', name).then((env) => /^SSH_PORT=(\d+)$/m.exec(env)?.[1]));
        const handle = { instance: name, port };
        return { handle, state: await this.state(handle) };
      }),
    );
  }

  /** The cloud takes the spot instance back: it dies with its jobs, and says so. */
  async preempt(handle: BackendHandle): Promise<void> {
    await writeFile(join(HOSTS_ROOT, String(handle.instance), 'preempted'), '');
    await docker('kill', String(handle.instance)).catch(() => undefined);
    await killJobs(Number(handle.port), 'kill');
  }
}

async function killJobs(port: number, how: 'kill' | 'rm'): Promise<void> {
  const jobs = await docker('ps', '-aq', '--filter', `label=dstack.host=root@127.0.0.1:${port}`).catch(() => '');
  const ids = jobs.split('\n').filter(Boolean);
  if (ids.length) await docker(...(how === 'rm' ? ['rm', '-f', '-v'] : ['kill']), ...ids).catch(() => undefined);
}

/** The providers the plugin made, by backend id: tests reach them to preempt an instance. */
export const fakeClouds = new Map<string, FakeCloud>();

export const fakeCloudPlugin: Plugin<FakeCloudRemote> = instancePlugin<FakeCloudRemote>({
  kind: 'fakecloud',
  describe: 'a fake cloud whose instances are SSH host containers (tests)',
  configSchema: async () => fakeCloudSchema,
  addExample: 'dstack config fakecloud --name NAME --region REGION',
  columns: (r) => ({ REGION: r.region }),
  commands: async () => [(await import('./fake-cloud-command.js')).ConfigFakeCloudCommand],
  provider: (remote: FakeCloudRemote, options: BackendOpenOptions<FakeCloudRemote>) => {
    const cloud = new FakeCloud(remote, options.home);
    fakeClouds.set(cloud.id, cloud);
    return cloud;
  },
});
