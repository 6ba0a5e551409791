/**
 * The Ec2Provider, loaded on first use: the built-in plugin list is imported by every run, local ones
 * too, and none of them should load the AWS backend's modules. `supports` is answered from the small
 * GPU table alone; everything else loads provider.ts (which loads the SDK on its own first call).
 */
import type { BackendHandle, Capability, ImageDigestOptions, JobContext, MachineOffer } from '../../engine/backend.js';
import type { JobSpec } from '../../engine/types.js';
import type { SshHostSpec } from '../ssh-host/host-spec.js';
import type { ImageIdentity, InstanceLaunch, InstanceProvider, InstanceState, OwnedInstance } from '../ssh-host/instance.js';
import type { SshConnection } from '../ssh-host/session.js';
import type { AwsRemote } from './config.js';
import { knownGpu } from './gpus.js';
import type { Ec2Provider } from './provider.js';

export class LazyEc2Provider implements InstanceProvider {
  readonly id: string;
  private loaded: Promise<Ec2Provider> | undefined;

  constructor(
    private readonly remote: AwsRemote,
    private readonly home: string,
  ) {
    this.id = `aws:${remote.name}`;
  }

  private get p(): Promise<Ec2Provider> {
    this.loaded ??= import('./provider.js').then(({ Ec2Provider }) => new Ec2Provider(this.remote, { home: this.home }));
    return this.loaded;
  }

  supports(spec: JobSpec): Capability {
    const gpu = spec.resources.gpu;
    return !gpu || gpu.count === 0 ? { ok: true } : knownGpu(gpu.name, gpu.count);
  }

  check = async (signal: AbortSignal): Promise<void> => (await this.p).check(signal);
  imageDigest = async (spec: JobSpec, options: ImageDigestOptions): Promise<ImageIdentity> => (await this.p).imageDigest(spec, options);
  launch = async (ctx: JobContext, boot: InstanceLaunch): Promise<BackendHandle> => (await this.p).launch(ctx, boot);
  address = async (handle: BackendHandle, signal: AbortSignal): Promise<SshHostSpec> => (await this.p).address(handle, signal);
  state = async (handle: BackendHandle): Promise<InstanceState> => (await this.p).state(handle);
  terminate = async (handle: BackendHandle): Promise<void> => (await this.p).terminate(handle);
  list = async (): Promise<readonly OwnedInstance[]> => (await this.p).list();
  ready = async (connection: SshConnection, signal: AbortSignal): Promise<void> => (await this.p).ready(connection, signal);
  offers = async (spec: JobSpec, signal: AbortSignal): Promise<readonly MachineOffer[]> => (await this.p).offers(spec, signal);
  close = async (): Promise<void> => {
    if (this.loaded) await (await this.loaded).close();
  };
}
