/**
 * The image a `provider: bash` workflow runs in when it names none: what dstack 0.7 promised, "containers
 * that have pre-configured Conda environments" — Python with Conda (Miniforge) ready, the version chosen
 * by `python:`, and a CUDA variant for jobs that ask for a GPU (issue 12).
 *
 * ONE TABLE, TO BE CHECKED: the names follow dstack 0.7's own bash provider, read in its public
 * source (`dstackai/miniforge:py{python}-{miniforge_image}`, `…-cuda-11.1`; later 0.7 releases moved
 * the CUDA variant to 11.4), and its tests name `dstackai/miniforge:py3.9-0.2`, the release used
 * here. The digest of each tag lives in default-image-digests.json, written by
 * `node scripts/image-digests.mjs` (the registry's HTTP API; `--check` compares). That file was
 * shipped with every digest null because no registry is reachable from the machine it was written
 * on: a digest is never invented, and until one is read the tag alone is pulled. With a digest, the
 * reference becomes `name:tag@sha256:…` and the engine pulls and runs exactly that image whatever
 * the tag points at later.
 */

import shipped from './default-image-digests.json' with { type: 'json' };

export interface DefaultImage {
  /** `name:tag` of the image for jobs without a GPU. */
  readonly cpu: string;
  /** `name:tag` of the CUDA variant, for jobs with `resources.gpu`. */
  readonly cuda: string;
}

/** `name:tag` → its manifest digest, or null while unread. */
export type ImageDigests = Readonly<Record<string, string | null>>;

/** What default-image-digests.json holds; its keys are exactly the references of DEFAULT_IMAGES (a unit test says so). */
export const SHIPPED_DIGESTS: ImageDigests = shipped.digests;

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** `name:tag@sha256:…` when `digests` (default: the shipped file) has a well-formed digest of `ref`; else `ref` alone. */
export function pin(ref: string, digests: ImageDigests = SHIPPED_DIGESTS): string {
  const d = Object.hasOwn(digests, ref) ? digests[ref] : undefined;
  return typeof d === 'string' && DIGEST_RE.test(d) ? `${ref}@${d}` : ref;
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

/**
 * The reference to run for `python` (a key of DEFAULT_IMAGES): `name:tag@sha256:…` when `digests`
 * (default: the shipped file) has the tag's digest, else `name:tag`.
 */
export function defaultImageFor(python: string, gpu: boolean, digests: ImageDigests = SHIPPED_DIGESTS): string | undefined {
  const entry = Object.hasOwn(DEFAULT_IMAGES, python) ? DEFAULT_IMAGES[python] : undefined;
  if (!entry) return undefined;
  return pin(gpu ? entry.cuda : entry.cpu, digests);
}
