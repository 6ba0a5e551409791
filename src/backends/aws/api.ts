/**
 * What the AWS backend asks of EC2, in its own words: plain data and one error class, so that
 * offers, images, launch fallback and sweeping are pure or testable code that never loads the SDK.
 * `sdk.ts` implements `Ec2Api` with `@aws-sdk/client-ec2` (the only file that imports it).
 */

export interface GpuInfo {
  readonly count: number;
  /** `T4`, `A10G`, `L4`, `V100`, `A100`, `H100`. */
  readonly name: string;
  readonly manufacturer: string;
  /** Per GPU. */
  readonly memoryMiB: number;
}

export interface InstanceTypeInfo {
  readonly type: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly gpu?: GpuInfo;
  /** `x86_64`, `arm64`. */
  readonly architectures: readonly string[];
  /** The type can be had as spot / on demand (`SupportedUsageClasses`). */
  readonly spot: boolean;
  readonly onDemand: boolean;
}

export interface SpotPrice {
  readonly type: string;
  readonly zone: string;
  /** USD per hour, the latest price in that zone. */
  readonly price: number;
}

export interface ImageInfo {
  readonly id: string;
  readonly name: string;
  /** ISO 8601. */
  readonly created: string;
  readonly owner: string;
  readonly architecture: string;
  readonly rootDevice: string;
  /** The root volume's snapshot size: the root volume cannot be smaller. */
  readonly rootSizeGiB?: number;
}

export type InstanceStateName = 'pending' | 'running' | 'shutting-down' | 'terminated' | 'stopping' | 'stopped';

export interface InstanceInfo {
  readonly id: string;
  readonly state: InstanceStateName;
  /** Why it is in that state, as EC2 says it (`Client.UserInitiatedShutdown: …`, `Server.SpotInstanceTermination: …`). */
  readonly stateReason?: string;
  readonly type: string;
  readonly zone?: string;
  readonly publicIp?: string;
  readonly spot: boolean;
  readonly launchedAt?: Date;
  readonly tags: Readonly<Record<string, string>>;
}

export interface LaunchRequest {
  readonly imageId: string;
  readonly rootDevice: string;
  readonly type: string;
  readonly spot: boolean;
  /** A zone to launch in; with a subnet, the subnet's zone decides. */
  readonly zone?: string;
  readonly subnetId?: string;
  readonly keyName: string;
  readonly securityGroupId: string;
  readonly userData: string;
  readonly rootVolumeGiB: number;
  /** On the instance, its root volume and its spot request. */
  readonly tags: Readonly<Record<string, string>>;
}

/** An error EC2 answered, by its code (`InsufficientInstanceCapacity`, `UnauthorizedOperation`). */
export class AwsApiError extends Error {
  readonly code: string;
  readonly status: number | undefined;
  constructor(code: string, message: string, status?: number) {
    super(message);
    this.name = 'AwsApiError';
    this.code = code;
    this.status = status;
  }
}

export const isAwsApiError = (e: unknown, ...codes: string[]): e is AwsApiError =>
  e instanceof AwsApiError && (codes.length === 0 || codes.includes(e.code));

/**
 * The EC2 calls dstack makes. Every method may throw `AwsApiError` (EC2 answered an error) or a
 * DstackError (DS0230 credentials, DS0231 region, DS0234 EC2 unreachable).
 */
export interface Ec2Api {
  readonly region: string;
  /** The region's zones that are available: a cheap call that proves credentials and connectivity. */
  zones(signal?: AbortSignal): Promise<string[]>;
  /** The types among `types` that exist in this region (unknown names are skipped, not an error). */
  instanceTypes(types: readonly string[]): Promise<InstanceTypeInfo[]>;
  /** type → the zones that offer it. */
  offerings(types: readonly string[]): Promise<Map<string, string[]>>;
  /** The latest Linux spot price of each type in each zone that has one. */
  spotPrices(types: readonly string[]): Promise<SpotPrice[]>;
  images(owners: readonly string[], namePattern: string): Promise<ImageInfo[]>;
  /** Imports the public key under `name` unless a key pair of that name exists. */
  ensureKeyPair(name: string, publicKey: string, tags: Readonly<Record<string, string>>): Promise<void>;
  /** The VPC (and zone) of `subnetId`, or the region's default VPC; DS0234 when the subnet does not exist. */
  network(subnetId?: string): Promise<{ readonly vpcId?: string; readonly zone?: string }>;
  /**
   * The security group `name` in `vpcId` (created when missing) with SSH open to `cidr` only: a rule
   * for another address on port 22 is revoked. Returns its id.
   */
  ensureSecurityGroup(options: { readonly name: string; readonly vpcId?: string; readonly cidr: string; readonly tags: Readonly<Record<string, string>> }): Promise<string>;
  /** One RunInstances call, never retried by the SDK (the caller's fallback decides what comes next). */
  launch(request: LaunchRequest): Promise<InstanceInfo>;
  describe(ids: readonly string[]): Promise<InstanceInfo[]>;
  /** Instances carrying tag `key=value`, in any state but terminated. */
  listTagged(key: string, value: string): Promise<InstanceInfo[]>;
  /** Idempotent: an instance already gone is not an error. */
  terminate(ids: readonly string[]): Promise<void>;
  destroy(): void;
}
