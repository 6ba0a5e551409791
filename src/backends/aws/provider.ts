/**
 * AWS as an InstanceProvider (src/backends/ssh-host/instance.ts): what the generic instance backend
 * asks of a cloud, answered with EC2 (cloud.ts). Constructing it and `supports` cost nothing; the
 * SDK loads on the first call that needs AWS.
 *
 * The image's identity for the fingerprint comes from this machine's Docker engine: its image id,
 * and the registry digests it was pulled by, which the instance pulls it by. An image that only
 * this machine has (built here, never pushed) can be fingerprinted but not run remotely: the
 * instance fails clearly (DS0214) rather than run something else.
 */
import type { BackendHandle, Capability, ImageDigestOptions, JobContext, MachineOffer } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import type { JobSpec } from '../../engine/types.js';
import { DockerApiError, DockerClient, endpointFromEnv } from '../docker/docker.js';
import type { SshHostSpec } from '../ssh-host/host-spec.js';
import type { SshConnection } from '../ssh-host/session.js';
import type { ImageIdentity, InstanceLaunch, InstanceProvider, InstanceState, OwnedInstance } from '../ssh-host/instance.js';
import { clientKey } from '../ssh-host/instance-keys.js';
import { AwsCloud, type AwsHandle } from './cloud.js';
import type { AwsRemote } from './config.js';
import { capped } from './launch.js';
import { knownGpu } from './gpus.js';
import { formatGpu } from './offers.js';
import { homeIdOf, TAG_JOB } from './resources.js';
import { customEndpoint, openEc2 } from './sdk.js';
import { BOOT_LOG, BOOTSTRAP_DIR, BOOTSTRAP_DONE, BOOTSTRAP_FAILED } from './user-data.js';

/** How long the user-data may take (a Docker install from Ubuntu's archive, the NVIDIA runtime). */
const BOOTSTRAP_READY_SECONDS = 600;

/** Exits 0 once the bootstrap is done, 3 with what failed and the boot log's end, 4 after `seconds` with the step it is at. */
const readyScript = (seconds: number): string => `i=0
while [ "$i" -lt ${seconds} ]; do
  if [ -e ${BOOTSTRAP_DONE} ]; then exit 0; fi
  if [ -e ${BOOTSTRAP_FAILED} ]; then cat ${BOOTSTRAP_FAILED}; echo ---; tail -n 12 ${BOOT_LOG} 2>/dev/null; exit 3; fi
  sleep 1; i=$((i + 1))
done
cat ${BOOTSTRAP_DIR}/step 2>/dev/null || echo 'not started'; echo ---; tail -n 12 ${BOOT_LOG} 2>/dev/null
exit 4`;

/** `4 min`, `2 h 5 min`. */
const upFor = (ms: number): string => {
  const min = Math.max(0, Math.floor(ms / 60_000));
  return min < 60 ? `${min} min` : `${Math.floor(min / 60)} h ${min % 60} min`;
};

const handleOf = (h: BackendHandle): AwsHandle => {
  if (typeof h.instance !== 'string' || typeof h.region !== 'string') throw new Error(`not an AWS handle: ${JSON.stringify(h)}`);
  return { instance: h.instance, region: h.region };
};

export class Ec2Provider implements InstanceProvider {
  readonly id: string;
  private readonly cloud: AwsCloud;
  private readonly remote: AwsRemote;
  private readonly home: string;
  private login = 'ubuntu';

  constructor(remote: AwsRemote, options: { readonly home: string; readonly env?: NodeJS.ProcessEnv }) {
    this.remote = remote;
    this.home = options.home;
    this.id = `aws:${remote.name}`;
    const env = options.env ?? process.env;
    this.cloud = new AwsCloud({
      remote,
      open: () => openEc2({ ...(remote.region ? { region: remote.region } : {}), ...(remote.profile ? { profile: remote.profile } : {}) }),
      env,
      ...(customEndpoint(env) ? { endpoint: customEndpoint(env) } : {}),
    });
  }

  /** Pure: what no instance type of the shipped table could do. The region's offers decide the rest at launch. */
  supports(spec: JobSpec): Capability {
    const gpu = spec.resources.gpu;
    if (!gpu || gpu.count === 0) return { ok: true };
    const known = knownGpu(gpu.name, gpu.count);
    return known;
  }

  async check(signal: AbortSignal): Promise<void> {
    await (await this.cloud.ec2()).zones(signal);
  }

  async imageDigest(spec: JobSpec, options: ImageDigestOptions): Promise<ImageIdentity> {
    const docker = new DockerClient(endpointFromEnv());
    try {
      const info = (await docker.imageInspect(spec.image, options.signal)) as { Id: string; RepoDigests?: string[] };
      return { digest: info.Id, pullAs: info.RepoDigests ?? [] };
    } catch (e) {
      if (e instanceof DockerApiError && e.status === 404) {
        throw new DstackError('DS0201', `image ${spec.image} is not on this machine: its digest is pinned from here before an instance pulls it`, {
          hint: `pull it once: docker pull ${spec.image}`,
        });
      }
      throw e;
    } finally {
      docker.close();
    }
  }

  /** This dstack home in AWS: a hash of its client key, which the generic backend makes once. */
  private async homeId(): Promise<string> {
    return homeIdOf((await clientKey(this.home)).publicKey);
  }

  async launch(ctx: JobContext, boot: InstanceLaunch): Promise<BackendHandle> {
    const launched = await this.cloud.launch({
      spec: ctx.spec,
      run: ctx.run,
      job: ctx.job,
      homeId: homeIdOf(boot.authorizedKey),
      clientPublicKey: boot.authorizedKey,
      bootScript: boot.bootScript,
      ...(this.remote.maxDurationSeconds ? { maxDurationSeconds: this.remote.maxDurationSeconds } : {}),
      signal: ctx.signal,
      notify: (message) => ctx.notify({ kind: 'info', message }),
      recordInstance: (h) => ctx.recordHandle({ ...h }),
    });
    this.login = launched.login;
    return { instance: launched.instance.id, region: (await this.cloud.ec2()).region };
  }

  async offers(spec: JobSpec, _signal: AbortSignal): Promise<readonly MachineOffer[]> {
    return capped(await this.cloud.offersOrFail(spec.resources)).map((o) => ({
      type: o.type,
      market: o.market,
      vcpus: o.vcpus,
      memoryMiB: o.memoryMiB,
      ...(o.gpu ? { gpus: formatGpu(o.gpu) } : {}),
      pricePerHour: o.price,
      estimate: o.estimate,
    }));
  }

  async address(handle: BackendHandle, signal: AbortSignal): Promise<SshHostSpec> {
    const a = await this.cloud.waitForAddress(handleOf(handle).instance, signal);
    return { user: this.login, host: a.host, port: a.port };
  }

  async state(handle: BackendHandle): Promise<InstanceState> {
    const s = await this.cloud.state(handleOf(handle).instance).catch(() => ({ state: 'gone' as const }));
    if (s.state !== 'ended') return s.state;
    return /Server\.SpotInstanceTermination|spot/i.test(s.reason) ? 'preempted' : 'terminated';
  }

  async terminate(handle: BackendHandle): Promise<void> {
    await this.cloud.terminate([handleOf(handle).instance]);
  }

  async list(): Promise<readonly OwnedInstance[]> {
    const [region, homeId] = await Promise.all([this.cloud.ec2().then((e) => e.region), this.homeId()]);
    return (await this.cloud.owned(homeId)).map((i) => ({
      handle: { instance: i.id, region },
      id: i.id,
      state: i.state === 'running' ? 'running' : i.state === 'pending' ? 'pending' : 'terminated',
      ...(i.tags[TAG_JOB] ? { job: i.tags[TAG_JOB] } : {}),
      detail: [`${i.type}${i.spot ? ' (spot)' : ''}`, i.zone, i.launchedAt ? `up ${upFor(Date.now() - i.launchedAt.getTime())}` : undefined].filter(Boolean).join(', '),
    }));
  }

  /**
   * Waits for the user-data's end (user-data.ts): its `done` marker, or its `failed` one — then
   * DS0236 with the step and the end of the boot log. Polled on the instance, one round trip.
   */
  async ready(connection: SshConnection, signal: AbortSignal): Promise<void> {
    const r = await connection.exec(readyScript(BOOTSTRAP_READY_SECONDS), { signal });
    if (r.code === 0) return;
    const out = r.stdout.toString('utf8').trim();
    const [what, log] = out.split('\n---\n');
    const tail = log ? `\n  the boot log ends with:\n${log.split('\n').map((l) => `    ${l}`).join('\n')}` : '';
    throw new DstackError('DS0236', r.code === 3 ? `the bootstrap of the instance at ${connection.label} failed: ${what}${tail}` : `the instance at ${connection.label} did not finish its bootstrap within ${BOOTSTRAP_READY_SECONDS / 60} minutes (at step '${what}')${tail}`, {
      hint: 'the instance is terminated; GPU jobs need an image with the NVIDIA driver (the deep-learning AMI) and a GPU instance type',
    });
  }

  async close(): Promise<void> {
    this.cloud.close();
  }
}
