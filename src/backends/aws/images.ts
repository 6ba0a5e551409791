/**
 * Which machine image an instance boots: the newest of a known family, by name, from its publisher's
 * account only (a public image of the same name from anyone else is never taken).
 *
 * - GPU jobs: AWS's Deep Learning Base AMI (Ubuntu 22.04) — NVIDIA driver, Docker and the NVIDIA
 *   container toolkit preinstalled, so the bootstrap only checks them.
 * - Other jobs: Canonical's Ubuntu 22.04 server image, small and quick to boot; the bootstrap
 *   installs Docker (`docker.io` from Ubuntu's archive).
 *
 * Both log in as `ubuntu`. Only x86_64 images (the offers are x86_64 only, see offers.ts).
 */
import { DstackError } from '../../engine/errors.js';
import type { Ec2Api, ImageInfo } from './api.js';

export interface ImageFamily {
  readonly kind: 'deep-learning' | 'plain';
  readonly description: string;
  readonly owners: readonly string[];
  /** A DescribeImages name filter (`*` wildcard). */
  readonly namePattern: string;
  readonly login: string;
  /** Docker (and for GPU jobs the NVIDIA toolkit) come with the image. */
  readonly dockerPreinstalled: boolean;
}

/** AWS's DLAMI account; Canonical's. */
const AMAZON_DLAMI_OWNER = '898082745236';
const CANONICAL = '099720109477';

export const DEEP_LEARNING: ImageFamily = {
  kind: 'deep-learning',
  description: 'Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)',
  owners: [AMAZON_DLAMI_OWNER],
  namePattern: 'Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *',
  login: 'ubuntu',
  dockerPreinstalled: true,
};

export const PLAIN: ImageFamily = {
  kind: 'plain',
  description: 'Ubuntu 22.04 (Canonical)',
  owners: [CANONICAL],
  namePattern: 'ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*',
  login: 'ubuntu',
  dockerPreinstalled: false,
};

export interface ImageChoice {
  readonly image: ImageInfo;
  readonly family: ImageFamily;
}

export const familyFor = (gpu: boolean): ImageFamily => (gpu ? DEEP_LEARNING : PLAIN);

/** The newest x86_64 image of the family; DS0235 when the region has none. */
export async function chooseImage(ec2: Ec2Api, gpu: boolean): Promise<ImageChoice> {
  const family = familyFor(gpu);
  const found = (await ec2.images(family.owners, family.namePattern)).filter((i) => i.architecture === 'x86_64' && family.owners.includes(i.owner));
  const newest = found.sort((a, b) => b.created.localeCompare(a.created) || b.name.localeCompare(a.name))[0];
  if (!newest) {
    throw new DstackError('DS0235', `no ${family.description} image in ${ec2.region}`, {
      hint: `check with \`aws ec2 describe-images --region ${ec2.region} --owners ${family.owners.join(' ')} --filters 'Name=name,Values=${family.namePattern}'\`, or configure another region`,
    });
  }
  return { image: newest, family };
}
