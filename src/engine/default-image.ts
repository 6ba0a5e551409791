/**
 * The image a `provider: bash` workflow runs in when it names none: what dstack 0.7 promised, "containers
 * that have pre-configured Conda environments" — Python with Conda (Miniforge) ready, the version chosen
 * by `python:`, and a CUDA variant for jobs that ask for a GPU (issue 12).
 *
 * ONE TABLE, TO BE CHECKED: the names follow dstack 0.7's own bash provider, read in its public
 * source (`dstackai/miniforge:py{python}-{miniforge_image}`, `…-cuda-11.1`; later 0.7 releases moved
 * the CUDA variant to 11.4), and its tests name `dstackai/miniforge:py3.9-0.2`, the release used
 * here. No registry is reachable from the machine this was written on, so no digest could be read:
 * every `digest` is left empty rather than invented, and the tag alone is used until someone with
 * network access fills them in (`docker buildx imagetools inspect IMAGE` prints the digest). With a
 * digest, the reference becomes `name:tag@sha256:…` and the engine runs exactly that image whatever
 * the tag points at later.
 */

export interface DefaultImage {
  /** `name:tag` of the image for jobs without a GPU. */
  readonly cpu: string;
  /** `name:tag` of the CUDA variant, for jobs with `resources.gpu`. */
  readonly cuda: string;
  /** `sha256:…` of each, once verified; empty: unpinned (see above). */
  readonly cpuDigest?: string;
  readonly cudaDigest?: string;
}

const RELEASE = '0.2';
const miniforge = (python: string): DefaultImage => ({
  cpu: `dstackai/miniforge:py${python}-${RELEASE}`,
  cuda: `dstackai/miniforge:py${python}-${RELEASE}-cuda-11.1`,
});

/** By `python:` version. A version not listed has no default image (DS0044): give `image:`. */
export const DEFAULT_IMAGES: Readonly<Record<string, DefaultImage>> = {
  '3.7': miniforge('3.7'),
  '3.8': miniforge('3.8'),
  '3.9': miniforge('3.9'),
  '3.10': miniforge('3.10'),
  '3.11': miniforge('3.11'),
};

/** The reference to run for `python` (a key of DEFAULT_IMAGES), pinned when the table has a digest. */
export function defaultImageFor(python: string, gpu: boolean): string | undefined {
  const entry = Object.hasOwn(DEFAULT_IMAGES, python) ? DEFAULT_IMAGES[python] : undefined;
  if (!entry) return undefined;
  const [ref, digest] = gpu ? [entry.cuda, entry.cudaDigest] : [entry.cpu, entry.cpuDigest];
  return digest ? `${ref}@${digest}` : ref;
}
