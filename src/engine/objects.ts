/**
 * The artifact contract: manifests, and the stores that hold what they point at. Content-addressed:
 * every file is stored once under its sha256 (`objects/sha256/ab/<hash>`), and a job's artifacts are
 * a manifest of entries pointing at objects.
 *
 * Two layers:
 * - `ObjectStore`: bytes by hash. The local folder (src/artifacts/local-objects.ts), a host's object
 *   cache over SSH, and the team bucket (S3, a shared folder) implement it. Shaped for a bucket: a
 *   batch of existence checks in one round trip, streams rather than paths, presigned URLs.
 * - `ArtifactStore`: trees of files over an object store (save a job's paths, write a manifest
 *   out under a folder). The local one is src/artifacts/local-store.ts.
 *
 * The store never serves wrong bytes: every read verifies what it hands out against the hash it is
 * named by, and a mismatch is an error (DS0304), never a clean end.
 */
import type { Readable } from 'node:stream';
import type { ArtifactSpec, ContentHash } from './types.js';

export type ManifestEntry =
  | { readonly type: 'file'; readonly path: string; readonly size: number; readonly mode: number; readonly hash: ContentHash }
  | { readonly type: 'dir'; readonly path: string; readonly mode: number }
  | { readonly type: 'symlink'; readonly path: string; readonly target: string };

export interface Manifest {
  readonly version: 1;
  /** Sorted by path; paths relative to `/workflow`, `/`-separated, never escaping. */
  readonly entries: readonly ManifestEntry[];
  /** Sum of file sizes. */
  readonly size: number;
}

export const emptyManifest: Manifest = { version: 1, entries: [], size: 0 };

export interface ObjectInfo {
  readonly hash: ContentHash;
  readonly size: number;
}

/** Why a read found no good object under a name. */
export type ObjectFault = 'missing' | 'damaged';

export interface GetOptions {
  /** The size the caller expects (a manifest's); more or fewer bytes is `damaged` without reading on. */
  readonly size?: number;
  readonly signal?: AbortSignal;
}

export interface PutOptions {
  readonly signal?: AbortSignal;
}

/**
 * Objects by content. Names are sha256 hashes; an object's bytes always hash to its name, and an
 * implementation proves it on every read rather than trusting what it holds.
 *
 * A read that finds an object missing or damaged reports it (`onFault` of the implementation's
 * options): the local store then quarantines the object and the run store forgets the cache hits
 * that referred to it, so the next run re-runs the job that made it instead of failing forever.
 */
export interface ObjectStore {
  /**
   * Which of `hashes` the store holds under their name (present, not verified: that is the reads'
   * job). One round trip per batch where the store allows it (a folder: no round trip; a bucket: a
   * listing per prefix or a batch of HEADs), never one request per object on a remote store.
   */
  hasMany(hashes: Iterable<ContentHash>): Promise<Set<ContentHash>>;
  /**
   * Stores the bytes of `open()` under `hash`. Create-only: an object that is already there and
   * sound is kept and `open` is never called (`created: false`); a damaged one is replaced. The
   * bytes are hashed as they are written: a stream that does not hash to `hash`, or is not `size`
   * bytes long, is refused with DS0304 and nothing is stored under the name. Idempotent, and safe
   * when several writers put the same object at once (one of them reports `created`).
   */
  put(hash: ContentHash, size: number, open: () => Readable | Promise<Readable>, options?: PutOptions): Promise<{ readonly created: boolean }>;
  /**
   * The object's bytes, verified as they stream: the stream errors with DS0303 (missing) or DS0304
   * (the bytes do not hash to the name, or are not `options.size` long) instead of ending. A consumer
   * must therefore treat what it wrote as garbage until the stream has ended: write to a temporary
   * name, rename on 'end'.
   */
  get(hash: ContentHash, options?: GetOptions): Readable;
  /** A URL that GETs the object for `seconds` without credentials. Absent: the store has no URLs (a local folder). */
  presignGet?(hash: ContentHash, seconds: number): Promise<string>;
  /** A URL that PUTs the object (exactly `size` bytes) for `seconds`. Absent: the store has no URLs. */
  presignPut?(hash: ContentHash, size: number, seconds: number): Promise<string>;
  /** Every object under its own name, in no particular order. */
  list(): AsyncIterable<ObjectInfo>;
}

/**
 * An object store whose objects are files on this machine: what hard-linking (deps staging) needs.
 * A hard link hands out the object's own inode, so these check the object first — cheaply when it
 * was hashed before and its (device, inode, size, mtime, ctime) are unchanged since, by hashing it
 * otherwise — and keep that "already verified" record across the links they make and remove (a link
 * changes the inode's ctime), so a 1 GiB dep is not hashed again for every job.
 */
export interface FileObjectStore extends ObjectStore {
  /** The object's file once it is proved sound; DS0303/DS0304 (and reported, as for `get`) otherwise. */
  verifiedPath(hash: ContentHash): Promise<string>;
  /**
   * The object's bytes, whole (for a body sent in one request), proved sound: by its record when
   * the file is unchanged since it was last hashed and stayed unchanged while read, else by hashing
   * them. DS0303/DS0304 (and reported, as for `get`) otherwise.
   */
  readVerified(hash: ContentHash, size: number): Promise<Buffer>;
  /**
   * Hard-links the object at `to` once it is proved sound (DS0303/DS0304 otherwise). Errors of the
   * link itself (EXDEV, EPERM…) are the caller's to fall back on (a copy through `get`).
   */
  link(hash: ContentHash, to: string): Promise<void>;
  /** Runs `remove`, which deletes hard links made with `link`, keeping the objects' records. */
  unlinking(hashes: Iterable<ContentHash>, remove: () => Promise<void>): Promise<void>;
}

export const isFileObjectStore = (s: ObjectStore): s is FileObjectStore => typeof (s as Partial<FileObjectStore>).link === 'function';

export interface SaveResult {
  readonly manifest: Manifest;
  /** Bytes of objects that were not in the store before. */
  readonly newBytes: number;
  /** Artifact paths that do not exist. */
  readonly missing: readonly string[];
  /** Fifos, sockets and devices found under the artifact paths: not saved, and the user is told. */
  readonly skipped: readonly SkippedEntry[];
}

export interface SkippedEntry {
  readonly path: string;
  readonly kind: 'fifo' | 'socket' | 'device';
}

export interface ArtifactStore {
  /** The objects the manifests point at. */
  readonly objects: ObjectStore;
  /**
   * Saves the artifact paths found under `root` (the job's `/workflow` on the host). A path that
   * does not exist is skipped and reported in `missing`. Objects appear under their final name only
   * complete. Nothing under `root` is followed out of it: a symlink is kept when it resolves inside
   * `root` (after any chain of links) and refused (DS0302) when it does not; a folder on the way that
   * is a symlink out is refused too.
   */
  save(root: string, specs: readonly ArtifactSpec[]): Promise<SaveResult>;
  /**
   * Writes the manifest's entries under `dest` (which may already hold files: entries overwrite),
   * every file verified as it is copied. Nothing is written through a symlink found in `dest`.
   */
  materialize(manifest: Manifest, dest: string): Promise<void>;
  /** Adds one file's content; returns its hash. A damaged object already under that hash is replaced. */
  putFile(path: string): Promise<{ readonly hash: ContentHash; readonly created: boolean; readonly size: number }>;
  /**
   * Adds bytes whose hash is not known before they are read (a file in a container's archive), in
   * one pass that hashes and writes them. A sound object already under that hash stays (the copy is
   * dropped); a damaged one is replaced.
   */
  putStream(source: AsyncIterable<Buffer> | Iterable<Buffer>, options?: { readonly signal?: AbortSignal }): Promise<{ readonly hash: ContentHash; readonly created: boolean; readonly size: number }>;
  has(hash: ContentHash): Promise<boolean>;
}
