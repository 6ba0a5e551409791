/**
 * An AWS remote as saved in the dstack home's config.json (`dstack config aws`): where to run
 * (region, subnet), who runs it (a profile of the standard AWS configuration — never credentials:
 * dstack stores none), the team's bucket, and the safety knobs. Checked with typanion, both when
 * written and when read back.
 */
import * as t from 'typanion';
import { DstackError } from '../../engine/errors.js';

export interface AwsRemote {
  readonly name: string;
  readonly kind: 'aws';
  /** Absent: the SDK's (AWS_REGION, then the profile's). */
  readonly region?: string;
  /** A profile of ~/.aws/config; absent: AWS_PROFILE, then `default`. */
  readonly profile?: string;
  /** The team's S3 bucket (runs, artifacts). */
  readonly bucket: string;
  /** Launch into this subnet (its VPC, its zone); absent: the default VPC, any zone. */
  readonly subnet?: string;
  /** Who may reach the instances' SSH port; absent: this machine's public address (/32), looked up at launch. */
  readonly sshCidr?: string;
  /** Interruptible jobs may fall back to on-demand instances when no spot offer can be had (default true). */
  readonly onDemandFallback?: boolean;
  /** The dead-man switch: an instance powers off when no dstack renewed its heartbeat for this long (default 15). */
  readonly deadManMinutes?: number;
  /** Every instance powers off after this long, renewed or not (seconds); absent: no limit. */
  readonly maxDurationSeconds?: number;
}

export const DEFAULT_DEAD_MAN_MINUTES = 15;

const REGION = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$/;
const PROFILE = /^[A-Za-z0-9_.@+=,-]{1,128}$/;
/** S3's rules for new buckets: 3-63 of lower-case letters, digits, dots and hyphens, alphanumeric at both ends. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const SUBNET = /^subnet-[0-9a-f]{8,17}$/;

/** `a.b.c.d/n` with each part in range. */
export function isIpv4Cidr(s: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  return !!m && m.slice(1, 5).every((p) => Number(p) <= 255) && Number(m[5]) <= 32;
}

const matching = (re: RegExp, what: string): t.StrictValidator<unknown, string> =>
  t.cascade(t.isString(), t.makeValidator<string, string>({ test: (v, state): v is string => re.test(v) || !!state?.errors?.push(`${state.p ?? '.'}: expected ${what}, got ${JSON.stringify(v)}`) && false }));

export const awsRemoteSchema = t.isObject({
  name: t.isString(),
  kind: t.isLiteral('aws'),
  region: t.isOptional(matching(REGION, 'a region such as us-east-1')),
  profile: t.isOptional(matching(PROFILE, 'a profile name')),
  bucket: matching(BUCKET, 'an S3 bucket name (3-63 lower-case letters, digits, dots and hyphens)'),
  subnet: t.isOptional(matching(SUBNET, 'a subnet id such as subnet-0123456789abcdef0')),
  sshCidr: t.isOptional(t.cascade(t.isString(), t.makeValidator<string, string>({ test: (v, state): v is string => isIpv4Cidr(v) || !!state?.errors?.push(`${state.p ?? '.'}: expected an IPv4 CIDR such as 203.0.113.7/32, got ${JSON.stringify(v)}`) && false }))),
  onDemandFallback: t.isOptional(t.isBoolean()),
  deadManMinutes: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(1, 24 * 60)])),
  maxDurationSeconds: t.isOptional(t.cascade(t.isNumber(), [t.isInteger(), t.isAtLeast(60)])),
});

const FLAGS: Readonly<Record<string, string>> = {
  region: '--region',
  profile: '--profile',
  bucket: '--bucket',
  subnet: '--subnet',
  sshCidr: '--ssh-cidr',
  deadManMinutes: '--dead-man-minutes',
  maxDurationSeconds: '--max-duration',
};

/**
 * The remote as `dstack config aws` built it from flags, checked; DS0210 naming the flag
 * (`invalid --region: expected a region such as us-east-1, got "mars"`).
 */
export function checkAwsRemote(raw: AwsRemote): AwsRemote {
  const errors: string[] = [];
  if (awsRemoteSchema(raw, { errors })) return raw;
  const m = /^\.([A-Za-z]+): (.*)$/s.exec(errors[0] ?? '');
  const flag = m ? FLAGS[m[1]!] : undefined;
  const what = m ? `${m[2]!.charAt(0).toLowerCase()}${m[2]!.slice(1)}` : (errors[0] ?? 'not an AWS remote');
  throw new DstackError('DS0210', flag ? `invalid ${flag}: ${what}` : what, { hint: 'see `dstack config aws --help`' });
}
