/**
 * What an instance needs besides itself, made once per dstack home and region and reused: the home's
 * SSH key imported as a key pair, and a security group that lets only the caller reach port 22.
 * Every resource carries the tags that mark it as dstack's and as this home's.
 */
import { createHash } from 'node:crypto';
import { DstackError } from '../../engine/errors.js';
import type { Ec2Api } from './api.js';
import { isIpv4Cidr, type AwsRemote } from './config.js';

/** Tag keys on everything dstack creates in AWS. */
export const TAG_HOME = 'dstack:home';
export const TAG_REMOTE = 'dstack:remote';
export const TAG_RUN = 'dstack:run';
export const TAG_JOB = 'dstack:job';

/** A dstack home, as AWS knows it: a hash of its SSH public key (stable, and one per home). */
export const homeIdOf = (publicKey: string): string =>
  createHash('sha256').update(publicKey.trim().split(/\s+/).slice(0, 2).join(' ')).digest('hex').slice(0, 16);

export function homeTags(homeId: string, remote: string): Record<string, string> {
  return { [TAG_HOME]: homeId, [TAG_REMOTE]: remote };
}

export function jobTags(homeId: string, remote: string, run: string, job: string): Record<string, string> {
  return { ...homeTags(homeId, remote), [TAG_RUN]: run, [TAG_JOB]: job, Name: `dstack ${job}` };
}

export interface LaunchResources {
  readonly keyName: string;
  readonly securityGroupId: string;
  readonly subnetId?: string;
  /** The subnet's zone: the only one to launch in. */
  readonly zone?: string;
}

const CHECKIP = 'https://checkip.amazonaws.com';

/**
 * Who may reach the instances' SSH port: the remote's `sshCidr`, or this machine's public address as
 * AWS sees it (checkip.amazonaws.com), as a /32. DS0239 when it cannot be learnt.
 */
export async function callerCidr(remote: AwsRemote, signal: AbortSignal): Promise<string> {
  if (remote.sshCidr) return remote.sshCidr;
  let text: string;
  try {
    const r = await fetch(CHECKIP, { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    text = (await r.text()).trim();
  } catch (e) {
    signal.throwIfAborted();
    throw new DstackError('DS0239', `cannot learn this machine's public address from ${CHECKIP}: ${(e as Error).message}`, {
      hint: `say who may reach the instances' SSH port: dstack config aws --name ${remote.name} --ssh-cidr 203.0.113.7/32 … --force`,
    });
  }
  const cidr = `${text}/32`;
  if (!isIpv4Cidr(cidr)) {
    throw new DstackError('DS0239', `${CHECKIP} answered ${JSON.stringify(text.slice(0, 60))}, not an IPv4 address`, {
      hint: `say who may reach the instances' SSH port: dstack config aws --name ${remote.name} --ssh-cidr CIDR … --force`,
    });
  }
  return cidr;
}

/** The key pair and the security group (created when missing), and where to launch. */
export async function prepareResources(
  ec2: Ec2Api,
  o: { readonly remote: AwsRemote; readonly homeId: string; readonly publicKey: string; readonly cidr: string },
): Promise<LaunchResources> {
  const tags = homeTags(o.homeId, o.remote.name);
  const keyName = `dstack-${o.homeId}`;
  const [, network] = await Promise.all([ec2.ensureKeyPair(keyName, o.publicKey, tags), ec2.network(o.remote.subnet)]);
  const securityGroupId = await ec2.ensureSecurityGroup({
    name: `dstack-${o.homeId}`,
    ...(network.vpcId ? { vpcId: network.vpcId } : {}),
    cidr: o.cidr,
    tags,
  });
  return {
    keyName,
    securityGroupId,
    ...(o.remote.subnet ? { subnetId: o.remote.subnet } : {}),
    ...(network.zone ? { zone: network.zone } : {}),
  };
}
