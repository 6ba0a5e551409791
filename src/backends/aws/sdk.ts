/**
 * `Ec2Api` over `@aws-sdk/client-ec2` — the only file that imports it, through `await import()`, so
 * a local run never loads the SDK (about 150 ms).
 *
 * Credentials come from the SDK's standard chain (environment, shared config and credentials files
 * with the remote's profile, SSO, the instance role): dstack never reads or stores them. The SDK also
 * honours `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_EC2`, which is how the tests reach moto.
 *
 * Retries: the SDK's standard strategy (3 attempts) for every call but RunInstances, which gets one
 * attempt: a capacity error is answered with HTTP 500, which the SDK would retry in the same zone;
 * the launch fallback tries the next zone or offer instead, and handles throttling itself.
 */
import type * as Ec2Sdk from '@aws-sdk/client-ec2';
import { DstackError } from '../../engine/errors.js';
import { AwsApiError, type Ec2Api, type ImageInfo, type InstanceInfo, type InstanceStateName, type InstanceTypeInfo, type LaunchRequest, type SpotPrice } from './api.js';

export interface OpenEc2Options {
  /** Default: the SDK's (AWS_REGION, then the profile's region). */
  readonly region?: string;
  /** A profile of ~/.aws/config; default: AWS_PROFILE, then `default`. */
  readonly profile?: string;
}

type Sdk = typeof Ec2Sdk;
type Tags = Readonly<Record<string, string>>;

const CREDENTIAL_CODES = new Set(['AuthFailure', 'UnauthorizedOperation', 'InvalidClientTokenId', 'SignatureDoesNotMatch', 'OptInRequired', 'Blocked', 'ExpiredToken', 'RequestExpired']);

/** An endpoint other than AWS's own (moto, a proxy): its instances' addresses are not theirs. */
export function customEndpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.AWS_ENDPOINT_URL_EC2 || env.AWS_ENDPOINT_URL || undefined;
}

/** The SDK's errors in dstack's words: EC2's own as AwsApiError, the rest as coded DstackErrors. */
function translate(e: unknown, region: string): unknown {
  if (e instanceof DstackError || e instanceof AwsApiError) return e;
  const err = e as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number }; $fault?: string };
  const name = err.name ?? '';
  const message = err.message ?? String(e);
  if (name === 'CredentialsProviderError' || /could not load credentials/i.test(message)) {
    return new DstackError('DS0230', `no AWS credentials found: ${message}`, {
      hint: 'set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, run `aws sso login`, or name a profile: dstack config aws --name NAME --profile PROFILE …',
    });
  }
  if (CREDENTIAL_CODES.has(name)) {
    return new DstackError('DS0230', `AWS refused the credentials in ${region}: ${name}: ${message}`, {
      hint: 'check the credentials the AWS CLI uses (`aws sts get-caller-identity`) and that they may use EC2 in this region',
    });
  }
  if (/region is missing/i.test(message)) {
    return new DstackError('DS0231', 'no AWS region is set', { hint: 'set one: dstack config aws --name NAME --region us-east-1 …, or AWS_REGION' });
  }
  if (err.$metadata?.httpStatusCode !== undefined && name) return new AwsApiError(name, message, err.$metadata.httpStatusCode);
  const endpoint = customEndpoint() ?? `the EC2 endpoint of ${region}`;
  return new DstackError('DS0234', `cannot reach ${endpoint}: ${message}`, { hint: 'check the network (and AWS_ENDPOINT_URL if set), then try again' });
}

const tagList = (tags: Tags): { Key: string; Value: string }[] => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
const tagMap = (tags: readonly { Key?: string; Value?: string }[] | undefined): Record<string, string> =>
  Object.fromEntries((tags ?? []).filter((t) => t.Key).map((t) => [t.Key!, t.Value ?? '']));

function instanceInfo(i: Ec2Sdk.Instance): InstanceInfo {
  const reason = i.StateReason?.Message ?? (i.StateTransitionReason || undefined);
  return {
    id: i.InstanceId!,
    state: (i.State?.Name ?? 'pending') as InstanceStateName,
    ...(reason ? { stateReason: reason } : {}),
    type: i.InstanceType ?? '',
    ...(i.Placement?.AvailabilityZone ? { zone: i.Placement.AvailabilityZone } : {}),
    ...(i.PublicIpAddress ? { publicIp: i.PublicIpAddress } : {}),
    spot: i.InstanceLifecycle === 'spot',
    ...(i.LaunchTime ? { launchedAt: i.LaunchTime } : {}),
    tags: tagMap(i.Tags),
  };
}

function typeInfo(t: Ec2Sdk.InstanceTypeInfo): InstanceTypeInfo {
  const gpu = t.GpuInfo?.Gpus?.[0];
  const count = (t.GpuInfo?.Gpus ?? []).reduce((n, g) => n + (g.Count ?? 0), 0);
  const classes = t.SupportedUsageClasses ?? [];
  return {
    type: t.InstanceType!,
    vcpus: t.VCpuInfo?.DefaultVCpus ?? 0,
    memoryMiB: t.MemoryInfo?.SizeInMiB ?? 0,
    ...(gpu && count > 0 ? { gpu: { count, name: gpu.Name ?? '', manufacturer: gpu.Manufacturer ?? '', memoryMiB: gpu.MemoryInfo?.SizeInMiB ?? 0 } } : {}),
    architectures: t.ProcessorInfo?.SupportedArchitectures ?? [],
    spot: classes.includes('spot'),
    onDemand: classes.includes('on-demand'),
  };
}

/** Values of one filter go in slices: EC2 caps a filter's values (200 for most calls). */
function* slices<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

class SdkEc2 implements Ec2Api {
  constructor(
    readonly region: string,
    private readonly sdk: Sdk,
    private readonly client: Ec2Sdk.EC2Client,
    private readonly launcher: Ec2Sdk.EC2Client,
  ) {}

  private async send<T>(command: object, options: { readonly client?: Ec2Sdk.EC2Client; readonly signal?: AbortSignal } = {}): Promise<T> {
    try {
      return (await (options.client ?? this.client).send(command as never, options.signal ? { abortSignal: options.signal } : {})) as T;
    } catch (e) {
      throw translate(e, this.region);
    }
  }

  async zones(signal?: AbortSignal): Promise<string[]> {
    const r = await this.send<Ec2Sdk.DescribeAvailabilityZonesResult>(
      new this.sdk.DescribeAvailabilityZonesCommand({ Filters: [{ Name: 'state', Values: ['available'] }] }),
      signal ? { signal } : {},
    );
    return (r.AvailabilityZones ?? []).map((z) => z.ZoneName!).filter(Boolean);
  }

  async instanceTypes(types: readonly string[]): Promise<InstanceTypeInfo[]> {
    const out: InstanceTypeInfo[] = [];
    for (const values of slices(types, 100)) {
      let token: string | undefined;
      do {
        const r = await this.send<Ec2Sdk.DescribeInstanceTypesResult>(
          new this.sdk.DescribeInstanceTypesCommand({ Filters: [{ Name: 'instance-type', Values: values }], ...(token ? { NextToken: token } : {}) }),
        );
        out.push(...(r.InstanceTypes ?? []).map(typeInfo));
        token = r.NextToken;
      } while (token);
    }
    return out;
  }

  async offerings(types: readonly string[]): Promise<Map<string, string[]>> {
    const zones = new Map<string, string[]>();
    for (const values of slices(types, 100)) {
      let token: string | undefined;
      do {
        const r = await this.send<Ec2Sdk.DescribeInstanceTypeOfferingsResult>(
          new this.sdk.DescribeInstanceTypeOfferingsCommand({ LocationType: 'availability-zone', Filters: [{ Name: 'instance-type', Values: values }], ...(token ? { NextToken: token } : {}) }),
        );
        for (const o of r.InstanceTypeOfferings ?? []) {
          if (!o.InstanceType || !o.Location) continue;
          zones.set(o.InstanceType, [...(zones.get(o.InstanceType) ?? []), o.Location].sort());
        }
        token = r.NextToken;
      } while (token);
    }
    return zones;
  }

  async spotPrices(types: readonly string[]): Promise<SpotPrice[]> {
    // With StartTime = now, EC2 returns the price in effect now for each type and zone.
    const latest = new Map<string, SpotPrice & { at: number }>();
    for (const values of slices(types, 100)) {
      let token: string | undefined;
      do {
        const r = await this.send<Ec2Sdk.DescribeSpotPriceHistoryResult>(
          new this.sdk.DescribeSpotPriceHistoryCommand({ InstanceTypes: values as Ec2Sdk._InstanceType[], ProductDescriptions: ['Linux/UNIX'], StartTime: new Date(), ...(token ? { NextToken: token } : {}) }),
        );
        for (const p of r.SpotPriceHistory ?? []) {
          if (!p.InstanceType || !p.AvailabilityZone || !p.SpotPrice) continue;
          const key = `${p.InstanceType}@${p.AvailabilityZone}`;
          const at = p.Timestamp?.getTime() ?? 0;
          if ((latest.get(key)?.at ?? -1) < at) latest.set(key, { type: p.InstanceType, zone: p.AvailabilityZone, price: Number(p.SpotPrice), at });
        }
        token = r.NextToken || undefined;
      } while (token);
    }
    return [...latest.values()].map(({ at: _at, ...p }) => p);
  }

  async images(owners: readonly string[], namePattern: string): Promise<ImageInfo[]> {
    const r = await this.send<Ec2Sdk.DescribeImagesResult>(
      new this.sdk.DescribeImagesCommand({ Owners: [...owners], Filters: [{ Name: 'name', Values: [namePattern] }, { Name: 'state', Values: ['available'] }] }),
    );
    return (r.Images ?? []).map((i) => {
      const rootDevice = i.RootDeviceName ?? '/dev/sda1';
      const size = i.BlockDeviceMappings?.find((m) => m.DeviceName === rootDevice)?.Ebs?.VolumeSize;
      return {
        id: i.ImageId!,
        name: i.Name ?? '',
        created: i.CreationDate ?? '',
        owner: i.OwnerId ?? '',
        architecture: i.Architecture ?? '',
        rootDevice,
        ...(size ? { rootSizeGiB: size } : {}),
      };
    });
  }

  async ensureKeyPair(name: string, publicKey: string, tags: Tags): Promise<void> {
    try {
      await this.send(new this.sdk.DescribeKeyPairsCommand({ KeyNames: [name] }));
      return;
    } catch (e) {
      if (!(e instanceof AwsApiError && e.code === 'InvalidKeyPair.NotFound')) throw e;
    }
    try {
      await this.send(new this.sdk.ImportKeyPairCommand({ KeyName: name, PublicKeyMaterial: Buffer.from(publicKey), TagSpecifications: [{ ResourceType: 'key-pair', Tags: tagList(tags) }] }));
    } catch (e) {
      // Another dstack of the same home imported it meanwhile: the same key, by its name.
      if (!(e instanceof AwsApiError && e.code === 'InvalidKeyPair.Duplicate')) throw e;
    }
  }

  async network(subnetId?: string): Promise<{ readonly vpcId?: string; readonly zone?: string }> {
    if (subnetId) {
      let r: Ec2Sdk.DescribeSubnetsResult;
      try {
        r = await this.send<Ec2Sdk.DescribeSubnetsResult>(new this.sdk.DescribeSubnetsCommand({ SubnetIds: [subnetId] }));
      } catch (e) {
        if (e instanceof AwsApiError && e.code === 'InvalidSubnetID.NotFound') {
          throw new DstackError('DS0234', `subnet ${subnetId} does not exist in ${this.region}`, { hint: 'fix the remote: dstack config aws --name NAME --subnet subnet-… --force' });
        }
        throw e;
      }
      const s = r.Subnets?.[0];
      return { ...(s?.VpcId ? { vpcId: s.VpcId } : {}), ...(s?.AvailabilityZone ? { zone: s.AvailabilityZone } : {}) };
    }
    const r = await this.send<Ec2Sdk.DescribeVpcsResult>(new this.sdk.DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }));
    const vpcId = r.Vpcs?.[0]?.VpcId;
    return vpcId ? { vpcId } : {};
  }

  async ensureSecurityGroup(o: { readonly name: string; readonly vpcId?: string; readonly cidr: string; readonly tags: Tags }): Promise<string> {
    const filters = [{ Name: 'group-name', Values: [o.name] }, ...(o.vpcId ? [{ Name: 'vpc-id', Values: [o.vpcId] }] : [])];
    const found = await this.send<Ec2Sdk.DescribeSecurityGroupsResult>(new this.sdk.DescribeSecurityGroupsCommand({ Filters: filters }));
    let group = found.SecurityGroups?.[0];
    let id = group?.GroupId;
    if (!id) {
      try {
        const made = await this.send<Ec2Sdk.CreateSecurityGroupResult>(
          new this.sdk.CreateSecurityGroupCommand({
            GroupName: o.name,
            Description: 'dstack: SSH from the dstack CLI only',
            ...(o.vpcId ? { VpcId: o.vpcId } : {}),
            TagSpecifications: [{ ResourceType: 'security-group', Tags: tagList(o.tags) }],
          }),
        );
        id = made.GroupId!;
      } catch (e) {
        if (!(e instanceof AwsApiError && e.code === 'InvalidGroup.Duplicate')) throw e;
        group = (await this.send<Ec2Sdk.DescribeSecurityGroupsResult>(new this.sdk.DescribeSecurityGroupsCommand({ Filters: filters }))).SecurityGroups?.[0];
        id = group!.GroupId!;
      }
    }
    const ssh = (group?.IpPermissions ?? []).filter((p) => p.IpProtocol === 'tcp' && p.FromPort === 22 && p.ToPort === 22);
    const cidrs = ssh.flatMap((p) => (p.IpRanges ?? []).map((r) => r.CidrIp!)).filter(Boolean);
    const stale = cidrs.filter((c) => c !== o.cidr);
    if (stale.length) {
      await this.send(new this.sdk.RevokeSecurityGroupIngressCommand({ GroupId: id, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: stale.map((CidrIp) => ({ CidrIp })) }] }));
    }
    if (!cidrs.includes(o.cidr)) {
      try {
        await this.send(
          new this.sdk.AuthorizeSecurityGroupIngressCommand({
            GroupId: id,
            IpPermissions: [{ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: o.cidr, Description: 'SSH from the dstack CLI' }] }],
          }),
        );
      } catch (e) {
        if (!(e instanceof AwsApiError && e.code === 'InvalidPermission.Duplicate')) throw e;
      }
    }
    return id;
  }

  async launch(q: LaunchRequest): Promise<InstanceInfo> {
    const tags = tagList(q.tags);
    const r = await this.send<Ec2Sdk.Reservation>(
      new this.sdk.RunInstancesCommand({
        ImageId: q.imageId,
        InstanceType: q.type as Ec2Sdk._InstanceType,
        MinCount: 1,
        MaxCount: 1,
        KeyName: q.keyName,
        UserData: Buffer.from(q.userData).toString('base64'),
        // The dead-man switch powers the instance off: that must end its billing, not park it.
        InstanceInitiatedShutdownBehavior: 'terminate',
        // IMDSv2 only, and one hop: the job's containers cannot reach the instance's metadata.
        MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 },
        BlockDeviceMappings: [{ DeviceName: q.rootDevice, Ebs: { VolumeSize: q.rootVolumeGiB, VolumeType: 'gp3', Encrypted: true, DeleteOnTermination: true } }],
        ...(q.subnetId
          ? { NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: q.subnetId, Groups: [q.securityGroupId], AssociatePublicIpAddress: true, DeleteOnTermination: true }] }
          : { SecurityGroupIds: [q.securityGroupId], ...(q.zone ? { Placement: { AvailabilityZone: q.zone } } : {}) }),
        ...(q.spot ? { InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' } } } : {}),
        TagSpecifications: [
          { ResourceType: 'instance', Tags: tags },
          { ResourceType: 'volume', Tags: tags },
          ...(q.spot ? [{ ResourceType: 'spot-instances-request' as const, Tags: tags }] : []),
        ],
      }),
      { client: this.launcher },
    );
    const i = r.Instances?.[0];
    if (!i?.InstanceId) throw new DstackError('DS0234', `RunInstances of ${q.type} answered without an instance`);
    return instanceInfo(i);
  }

  async describe(ids: readonly string[]): Promise<InstanceInfo[]> {
    if (ids.length === 0) return [];
    try {
      const r = await this.send<Ec2Sdk.DescribeInstancesResult>(new this.sdk.DescribeInstancesCommand({ InstanceIds: [...ids] }));
      return (r.Reservations ?? []).flatMap((x) => x.Instances ?? []).map(instanceInfo);
    } catch (e) {
      // Terminated instances drop out of EC2's answers after about an hour: gone.
      if (e instanceof AwsApiError && e.code === 'InvalidInstanceID.NotFound') return [];
      throw e;
    }
  }

  async listTagged(key: string, value: string): Promise<InstanceInfo[]> {
    const out: InstanceInfo[] = [];
    let token: string | undefined;
    do {
      const r = await this.send<Ec2Sdk.DescribeInstancesResult>(
        new this.sdk.DescribeInstancesCommand({
          Filters: [{ Name: `tag:${key}`, Values: [value] }, { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped', 'shutting-down'] }],
          ...(token ? { NextToken: token } : {}),
        }),
      );
      out.push(...(r.Reservations ?? []).flatMap((x) => x.Instances ?? []).map(instanceInfo));
      token = r.NextToken;
    } while (token);
    return out;
  }

  async terminate(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    try {
      await this.send(new this.sdk.TerminateInstancesCommand({ InstanceIds: [...ids] }));
    } catch (e) {
      if (e instanceof AwsApiError && e.code === 'InvalidInstanceID.NotFound') return;
      throw e;
    }
  }

  destroy(): void {
    this.client.destroy();
    this.launcher.destroy();
  }
}

/** The SDK loaded and two clients made; resolves the region (DS0231 when there is none). */
export async function openEc2(options: OpenEc2Options = {}): Promise<Ec2Api> {
  // The SDK warns on Node 20 about its releases of 2027; that is not the user's business mid-run.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const mod = await import('@aws-sdk/client-ec2');
  // Bundled as ESM, the CommonJS SDK comes as its `default` export; under Node's own loader, named.
  const sdk = ((mod as unknown as { default?: Sdk }).default ?? mod) as Sdk;
  const config = { ...(options.region ? { region: options.region } : {}), ...(options.profile ? { profile: options.profile } : {}) };
  const client = new sdk.EC2Client({ ...config, maxAttempts: 3 });
  const launcher = new sdk.EC2Client({ ...config, maxAttempts: 1 });
  let region: string;
  try {
    region = await client.config.region();
  } catch (e) {
    client.destroy();
    launcher.destroy();
    throw translate(e, options.region ?? '(no region)');
  }
  if (!region) throw translate(new Error('Region is missing'), '');
  return new SdkEc2(region, sdk, client, launcher);
}
