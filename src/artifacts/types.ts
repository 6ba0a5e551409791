/**
 * The artifact contract lives in the engine (src/engine/objects.ts), so the engine, the backends and
 * the bucket share it without the engine importing this folder; re-exported here for the artifact
 * code and the CLI.
 */
export { emptyManifest, isFileObjectStore } from '../engine/objects.js';
export type {
  ArtifactStore,
  FileObjectStore,
  GetOptions,
  Manifest,
  ManifestEntry,
  ObjectFault,
  ObjectInfo,
  ObjectStore,
  PutOptions,
  SaveResult,
  SkippedEntry,
} from '../engine/objects.js';
