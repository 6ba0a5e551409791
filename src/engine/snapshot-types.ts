import type { RepoInfo } from './types.js';

/** One file of the code snapshot. */
export interface SnapshotFile {
  /** Relative to the snapshot root, `/`-separated. */
  readonly path: string;
  readonly size: number;
  /** Permission bits (0o755, 0o644). */
  readonly mode: number;
  /** Set for a symlink (its target, as written); such an entry has no content. */
  readonly link?: string;
}

/** The code a run sees at `/workflow`: tracked plus untracked-not-ignored files of the repo. */
export interface Snapshot {
  readonly root: string;
  readonly files: readonly SnapshotFile[];
  readonly repo: RepoInfo;
}
