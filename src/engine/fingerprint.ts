/**
 * A job's fingerprint: a versioned sha256 over everything that can change what the job computes —
 * its resolved spec, the image's digest, the content of its inputs, and what its deps produced. Two
 * jobs with the same fingerprint are interchangeable, so a `done` one can stand in for the other.
 * Pure: the caller gathers the digest, the inputs listing and the deps' results.
 *
 * The parts are kept (FingerprintParts) so `--explain` can say which one changed.
 */
import crypto, { createHash } from 'node:crypto';
import type { Manifest, ManifestEntry } from './objects.js';
import { insideRelative } from './paths.js';
import { asContentHash, type ContentHash, type Fingerprint, type FingerprintParts, type JobSpec } from './types.js';

/** Bump when the meaning of a part changes: every earlier fingerprint then misses, as it must. */
export const FINGERPRINT_VERSION = 1;

/** The reason recorded on a job that was reused: `cached: <job id of the job that ran>`. */
export const CACHED_PREFIX = 'cached: ';

/** Values longer than this are not kept for messages (the part's hash still covers them). */
const MAX_VALUE = 80;

export interface FingerprintInput {
  readonly spec: JobSpec;
  /** What the backend resolved the image to (`sha256:…`). */
  readonly imageDigest: string;
  /** Tree hash of the job's inputs (`inputsOf`) and the object holding the listing they came from. */
  readonly inputs: { readonly hash: ContentHash; readonly listing?: ContentHash };
  /** Workflow deps that ended `done` (run or reused), by workflow name. */
  readonly deps: readonly { readonly workflow: string; readonly fingerprint: Fingerprint; readonly manifest: Manifest }[];
  /** `tag:` deps, resolved to the manifest the tag pins. */
  readonly tags: readonly { readonly name: string; readonly manifest: Manifest }[];
}

export function fingerprintParts(input: FingerprintInput): FingerprintParts {
  const { spec } = input;
  const parts: Record<string, string> = {};
  const values: Record<string, string> = {};
  const keep = (name: string, value: string): void => {
    if (value.length <= MAX_VALUE && !value.includes('\0')) values[name] = value;
  };

  // The digest itself, not a hash of it: short, not secret, and `--explain` shows it.
  parts.image = input.imageDigest;
  keep('image', spec.image);
  parts.command = sha256Json({ provider: spec.provider, entrypoint: spec.entrypoint ?? null, command: spec.command ?? null });
  // A value holding a secret holds its marker (`\0secret:NAME\0`), never the secret: hashing the
  // value as it stands covers the secret's name and nothing of its content.
  for (const [name, value] of Object.entries(spec.env)) parts[`env.${name}`] = sha256(value);
  // Every variable the job could see; one the job's templates never read still counts (resolution
  // does not record which were read), which errs on the side of running.
  for (const [name, value] of Object.entries(spec.variables)) {
    parts[`var.${name}`] = sha256(value);
    keep(`var.${name}`, value);
  }
  parts.args = sha256Json(spec.args);
  keep('args', spec.args.join(' '));
  parts.working_dir = sha256(spec.workingDir);
  keep('working_dir', spec.workingDir);
  // Only what changes results: the GPU count and model change which kernels run and the numerics
  // (and code paths such as `torch.cuda.is_available()`). cpu, memory and shm_size change speed, or
  // whether the job finishes at all — a job that ran out of memory failed and is never reused — and
  // interruptible only changes the price; none of them changes a correct job's output.
  const gpu = spec.resources.gpu;
  parts.resources = sha256Json({ gpu: gpu && gpu.count > 0 ? { count: gpu.count, name: gpu.name ?? null } : null });
  parts.artifacts = sha256Json(spec.artifacts.map((a) => a.path).sort());
  parts.inputs = input.inputs.hash;
  for (const d of input.deps) parts[`dep.${d.workflow}`] = sha256(`${d.fingerprint}\0${manifestDigest(d.manifest)}`);
  for (const t of input.tags) parts[`tag.${t.name}`] = manifestDigest(t.manifest);

  return {
    version: FINGERPRINT_VERSION,
    parts,
    values,
    ...(input.inputs.listing ? { inputsListing: input.inputs.listing } : {}),
  };
}

/** sha256 over the version and the sorted parts; `values` and `inputsListing` are for messages only. */
export function fingerprintOf(parts: FingerprintParts): Fingerprint {
  const h = createHash('sha256');
  h.update(`dstack-fingerprint\0${parts.version}\n`);
  for (const name of Object.keys(parts.parts).sort()) h.update(`${name}\0${parts.parts[name]!}\n`);
  return h.digest('hex') as Fingerprint;
}

/**
 * The tree hash of a listing: sha256 over one `path\0mode\0hash-or-link\n` line per entry, sorted by
 * path. Modes are octal, git-style for what is not a plain file: `120000` for a symlink (then the
 * target stands where a hash would), `40755` for a folder.
 */
export function treeHashOf(entries: readonly ManifestEntry[]): ContentHash {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const h = createHash('sha256');
  for (const e of sorted) {
    if (e.type === 'file') h.update(`${e.path}\0${e.mode.toString(8)}\0${e.hash}\n`);
    else if (e.type === 'symlink') h.update(`${e.path}\u0000120000\u0000${e.target}\n`);
    else h.update(`${e.path}\0${(0o40000 | e.mode).toString(8)}\0\n`);
  }
  return asContentHash(h.digest('hex'));
}

/**
 * The identity of an artifact set, whatever order its JSON keys were stored in. Remembered per
 * manifest object (manifests are never mutated): a dep's manifest is digested once, not once per
 * dependent.
 */
const digests = new WeakMap<Manifest, ContentHash>();
export const manifestDigest = (manifest: Manifest): ContentHash => {
  let d = digests.get(manifest);
  if (d === undefined) digests.set(manifest, (d = treeHashOf(manifest.entries)));
  return d;
};

/**
 * The entries of the code snapshot a job's `inputs:` select (a file, or a folder and everything
 * under it); all of them when it has none.
 */
export function selectInputs(snapshot: readonly ManifestEntry[], inputs: readonly string[] | undefined): readonly ManifestEntry[] {
  if (inputs === undefined) return snapshot;
  const roots = inputs.map((p) => insideRelative(p)).filter((p): p is string => p !== undefined);
  if (roots.includes('')) return snapshot;
  return snapshot.filter((e) => roots.some((r) => e.path === r || e.path.startsWith(`${r}/`)));
}

/** The `inputs` part of a job over a snapshot listing. */
export const inputsHash = (snapshot: readonly ManifestEntry[], inputs: readonly string[] | undefined): ContentHash =>
  treeHashOf(selectInputs(snapshot, inputs));

/**
 * `inputsHash` over one snapshot for many jobs, remembered by `inputs:` list: most jobs of a run
 * have none (the whole snapshot) or share one, and each hash sorts and hashes the whole listing —
 * for a 10,000-file snapshot ~10 ms (measured), which a 1,000-job plan paid 1,000 times (~10 s).
 */
export function inputsHasher(snapshot: readonly ManifestEntry[]): (inputs: readonly string[] | undefined) => ContentHash {
  const known = new Map<string, ContentHash>();
  return (inputs) => {
    const key = inputs === undefined ? '' : JSON.stringify(inputs);
    let hash = known.get(key);
    if (hash === undefined) known.set(key, (hash = inputsHash(snapshot, inputs)));
    return hash;
  };
}

// Node's one-shot `crypto.hash` (20.12+) where there is one: the same digest at about half the
// cost of createHash for short strings. A 1,000-job plan makes ~12,000 of them: ~10 ms saved.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;
const sha256 = oneShot ? (s: string): string => oneShot('sha256', s, 'hex') : (s: string): string => createHash('sha256').update(s).digest('hex');
const sha256Json = (v: unknown): string => sha256(JSON.stringify(v));
