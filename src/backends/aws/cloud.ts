/**
 * Everything the AWS backend does in EC2, for one remote: the offers for a job, launching the
 * cheapest that can be had (recording the instance the moment EC2 names it), waiting until it runs
 * and has an SSH address, its state, terminating it, and listing this home's instances. The SSH
 * side — host keys, the bootstrap over SSH, the job, heartbeats — is the shared instance machinery's
 * (src/backends/ssh-host); this file knows only EC2.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { DstackError } from '../../engine/errors.js';
import type { JobSpec, Resources } from '../../engine/types.js';
import { sshAddress, type SshAddress } from './address.js';
import type { Ec2Api, InstanceInfo } from './api.js';
import type { AwsRemote } from './config.js';
import { chooseImage } from './images.js';
import { launchWithFallback, type LaunchOutcome } from './launch.js';
import { describeResources, formatPrice, offersFor, pricedTypes, type Offer } from './offers.js';
import { callerCidr, jobTags, prepareResources, TAG_HOME } from './resources.js';
import { userData } from './user-data.js';

/** What a job's handle holds: enough for any later process to find the instance. */
export interface AwsHandle {
  readonly instance: string;
  readonly region: string;
}

/** What EC2 says of an instance dstack launched. */
export type InstanceState =
  | { readonly state: 'pending' | 'running' }
  /** It ended without dstack asking: spot taken back, powered off by its dead-man switch, terminated by someone. */
  | { readonly state: 'ended'; readonly reason: string }
  /** EC2 no longer knows it (terminated more than about an hour ago). */
  | { readonly state: 'gone' };

export interface LaunchInput {
  readonly spec: JobSpec;
  readonly run: string;
  readonly job: string;
  /** The dstack home's identity in AWS (resources.ts `homeIdOf`) and its public key. */
  readonly homeId: string;
  readonly clientPublicKey: string;
  /** The shared instance boot script (host key, dead-man switch), run first by the user-data. */
  readonly bootScript: string;
  /** Power the instance off this long after boot, whatever happens. */
  readonly maxDurationSeconds?: number;
  readonly signal: AbortSignal;
  readonly notify: (message: string) => void;
  /** Called with the instance id as soon as EC2 returns it, before anything waits. */
  readonly recordInstance: (handle: AwsHandle) => void;
}

export interface Launched extends LaunchOutcome {
  /** The login user of the image. */
  readonly login: string;
}

const ENDED = new Set(['shutting-down', 'terminated', 'stopping', 'stopped']);
/** How long an instance may take to run and get an SSH address. */
const RUNNING_TIMEOUT_MS = 10 * 60_000;

export interface AwsCloudOptions {
  readonly remote: AwsRemote;
  readonly open: () => Promise<Ec2Api>;
  readonly env?: NodeJS.ProcessEnv;
  /** The custom EC2 endpoint in use, if any (never connect to its instances' addresses). */
  readonly endpoint?: string;
  /** Between DescribeInstances polls while waiting (default 1 s, then 3 s after 20 s). */
  readonly pollMs?: (elapsedMs: number) => number;
}

export class AwsCloud {
  private ec2Value: Promise<Ec2Api> | undefined;
  private readonly offerCache = new Map<string, Promise<Offer[]>>();

  constructor(private readonly o: AwsCloudOptions) {}

  get remote(): AwsRemote {
    return this.o.remote;
  }

  ec2(): Promise<Ec2Api> {
    if (!this.ec2Value) {
      const p = this.o.open();
      p.catch(() => (this.ec2Value = undefined));
      this.ec2Value = p;
    }
    return this.ec2Value;
  }

  /** The offers for `resources`, in the order they would be tried (asked once per process and shape). */
  offers(resources: Resources): Promise<Offer[]> {
    const key = JSON.stringify(resources);
    let p = this.offerCache.get(key);
    if (!p) {
      p = this.findOffers(resources);
      p.catch(() => this.offerCache.delete(key));
      this.offerCache.set(key, p);
    }
    return p;
  }

  private async findOffers(resources: Resources): Promise<Offer[]> {
    const ec2 = await this.ec2();
    const spot = resources.interruptible === true;
    const candidates = pricedTypes(ec2.region);
    const [types, zones, spotPrices, network] = await Promise.all([
      ec2.instanceTypes(candidates),
      ec2.offerings(candidates),
      spot ? ec2.spotPrices(candidates) : Promise.resolve([]),
      this.o.remote.subnet ? ec2.network(this.o.remote.subnet) : Promise.resolve(undefined),
    ]);
    return offersFor(
      resources,
      { region: ec2.region, types, zones, spotPrices, ...(network?.zone ? { onlyZones: [network.zone] } : {}) },
      { spot, onDemandFallback: this.o.remote.onDemandFallback ?? true },
    );
  }

  /** The offers, or DS0232 saying what was asked when none fits. */
  async offersOrFail(resources: Resources): Promise<Offer[]> {
    const offers = await this.offers(resources);
    if (offers.length > 0) return offers;
    const ec2 = await this.ec2();
    throw new DstackError('DS0232', `no instance type in ${ec2.region} offers ${describeResources(resources)}${resources.interruptible && this.o.remote.onDemandFallback === false ? ' as spot' : ''}`, {
      hint: 'ask for less (--cpu, --memory, --gpu, --gpu-name, --gpu-memory), or use a region that has such types',
    });
  }

  /** Prepares what the instance needs and launches the first offer EC2 can fill. */
  async launch(input: LaunchInput): Promise<Launched> {
    const { spec } = input;
    const gpu = (spec.resources.gpu?.count ?? 0) > 0;
    const ec2 = await this.ec2();
    const [offers, image, cidr] = await Promise.all([this.offersOrFail(spec.resources), chooseImage(ec2, gpu), callerCidr(this.o.remote, input.signal)]);
    const resources = await prepareResources(ec2, { remote: this.o.remote, homeId: input.homeId, publicKey: input.clientPublicKey, cidr });
    const script = userData({
      login: image.family.login,
      authorizedKey: input.clientPublicKey,
      bootScript: input.bootScript,
      ...(input.maxDurationSeconds ? { maxDurationSeconds: input.maxDurationSeconds } : {}),
      installDocker: !image.family.dockerPreinstalled,
      gpu,
      label: `${input.job} (run ${input.run})`,
    });
    const tags = jobTags(input.homeId, this.o.remote.name, input.run, input.job);
    const outcome = await launchWithFallback({
      offers,
      region: ec2.region,
      signal: input.signal,
      notify: input.notify,
      launch: async (offer, zone) => {
        const instance = await ec2.launch({
          imageId: image.image.id,
          rootDevice: image.image.rootDevice,
          rootVolumeGiB: Math.max(image.image.rootSizeGiB ?? 0, gpu ? 100 : 40),
          type: offer.type,
          spot: offer.market === 'spot',
          ...(resources.subnetId ? { subnetId: resources.subnetId } : { zone }),
          keyName: resources.keyName,
          securityGroupId: resources.securityGroupId,
          userData: script,
          tags,
        });
        input.recordInstance({ instance: instance.id, region: ec2.region });
        return instance;
      },
    });
    input.notify(`launched ${outcome.instance.id}: ${outcome.offer.type} (${outcome.offer.market}, ${outcome.zone}, ${formatPrice(outcome.offer)}), image ${image.image.name}`);
    return { ...outcome, login: image.family.login };
  }

  /**
   * Waits until the instance runs and has an SSH address. DS0216 when it ends first (with EC2's
   * reason), DS0237 after 10 minutes.
   */
  async waitForAddress(id: string, signal: AbortSignal): Promise<SshAddress> {
    const ec2 = await this.ec2();
    const started = Date.now();
    for (;;) {
      signal.throwIfAborted();
      const [i] = await ec2.describe([id]);
      if (!i) throw new DstackError('DS0216', `instance ${id} is gone before the job started`, { hint: 'run again; if it keeps happening, see the EC2 console' });
      if (ENDED.has(i.state)) {
        throw new DstackError('DS0216', `instance ${id} ended before the job started: ${i.state}${i.stateReason ? ` (${i.stateReason})` : ''}`, {
          hint: 'a spot instance may be taken back at once when capacity is short: run again, or without --interruptible',
        });
      }
      if (i.state === 'running') {
        const address = await sshAddress(i, this.o.env ?? process.env, this.o.endpoint);
        if (address) return address;
      }
      const elapsed = Date.now() - started;
      if (elapsed > RUNNING_TIMEOUT_MS) {
        throw new DstackError('DS0237', `instance ${id} did not ${i.state === 'running' ? 'get an SSH address' : 'start running'} within ${RUNNING_TIMEOUT_MS / 60_000} minutes (it is ${i.state})`, {
          hint: 'it is terminated; run again, or in another zone or region',
        });
      }
      await delay(this.o.pollMs?.(elapsed) ?? (elapsed < 20_000 ? 1000 : 3000), undefined, { signal });
    }
  }

  async state(id: string): Promise<InstanceState> {
    const [i] = await (await this.ec2()).describe([id]);
    if (!i) return { state: 'gone' };
    if (ENDED.has(i.state)) return { state: 'ended', reason: `instance ${id} is ${i.state}${i.stateReason ? `: ${i.stateReason}` : ''}` };
    return { state: i.state === 'running' ? 'running' : 'pending' };
  }

  async terminate(ids: readonly string[]): Promise<void> {
    await (await this.ec2()).terminate(ids);
  }

  /** This home's instances that are not terminated yet, in any region state. */
  async owned(homeId: string): Promise<InstanceInfo[]> {
    return (await this.ec2()).listTagged(TAG_HOME, homeId);
  }

  close(): void {
    void this.ec2Value?.then((e) => e.destroy(), () => undefined);
    this.ec2Value = undefined;
  }
}
