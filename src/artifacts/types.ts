/**
 * The artifact store contract. Content-addressed: every file is stored once under its sha256
 * (`objects/sha256/ab/<hash>`), and a job's artifacts are a manifest of entries pointing at objects.
 * The local implementation is a folder in the dstack home; the team bucket (S3, GCS) implements the
 * same object interface later.
 */
import type { ArtifactSpec, ContentHash } from '../engine/types.js';

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

export interface SaveResult {
  readonly manifest: Manifest;
  /** Bytes of objects that were not in the store before. */
  readonly newBytes: number;
}

export interface ArtifactStore {
  /**
   * Saves the artifact paths found under `root` (the job's `/workflow` on the host). A path that
   * does not exist is skipped and reported in `missing`. Objects are written atomically (temp file,
   * fsync, rename) so a crash never leaves a half object under its final name. Symlinks are kept
   * when they resolve inside `root`, refused (DS0302) when they escape.
   */
  save(root: string, specs: readonly ArtifactSpec[]): Promise<SaveResult & { readonly missing: readonly string[] }>;
  /** Writes the manifest's entries under `dest` (which may already hold files: entries overwrite). */
  materialize(manifest: Manifest, dest: string): Promise<void>;
  /** Adds one file's content; returns its hash. */
  putFile(path: string): Promise<{ readonly hash: ContentHash; readonly created: boolean; readonly size: number }>;
  has(hash: ContentHash): Promise<boolean>;
  /** Absolute path of the object's file in the local store. */
  objectPath(hash: ContentHash): string;
}
