/**
 * Bucket remotes as saved in config.json, beside the compute remotes: a shared folder
 * (`{name, kind: "folder", path}`) or an S3 bucket (`{name, kind: "s3", bucket, prefix?, region?,
 * profile?}`), each with its schema (typanion, unknown keys refused), loaded by their plugins
 * (src/backends/bucket). An AWS remote's `bucket` (an S3 bucket's name) serves as a team bucket too.
 *
 * Nothing here opens a bucket: `openBucket` loads the S3 SDK or the folder code only when called.
 */
import * as t from 'typanion';
import { DstackError } from '../engine/errors.js';
import type { Bucket } from './bucket.js';

export interface FolderRemote {
  readonly name: string;
  readonly kind: 'folder';
  /** An absolute path: the shared folder's mount point. */
  readonly path: string;
}

export interface S3Remote {
  readonly name: string;
  readonly kind: 's3';
  readonly bucket: string;
  /** Keys under this prefix, so one bucket can hold several teams' stores. */
  readonly prefix?: string;
  readonly region?: string;
  /** A profile of ~/.aws/config; credentials are never stored here. */
  readonly profile?: string;
}

export type BucketRemote = FolderRemote | S3Remote;

export const isBucketRemote = (r: { readonly kind: string }): r is BucketRemote => r.kind === 'folder' || r.kind === 's3';

/** S3's rules for bucket names (3–63 characters, lower case, digits, dots and hyphens). */
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export const folderRemoteSchema: t.StrictValidator<unknown, FolderRemote> = t.isObject({
  name: t.isString(),
  kind: t.isLiteral('folder'),
  path: t.cascade(t.isString(), t.matchesRegExp(/^\//)),
});

export const s3RemoteSchema: t.StrictValidator<unknown, S3Remote> = t.isObject({
  name: t.isString(),
  kind: t.isLiteral('s3'),
  bucket: t.cascade(t.isString(), t.matchesRegExp(BUCKET_NAME)),
  prefix: t.isOptional(t.isString()),
  region: t.isOptional(t.isString()),
  profile: t.isOptional(t.isString()),
});

export function checkBucketName(name: string): string {
  if (!BUCKET_NAME.test(name) || name.includes('..')) {
    throw new DstackError('DS0210', `'${name}' is not a valid S3 bucket name`, { hint: 'use 3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit' });
  }
  return name;
}

/**
 * The bucket a remote stores runs in: a bucket remote's own, or the S3 bucket of an AWS remote
 * (its `bucket` field, in its region and profile). Undefined for a remote without one.
 */
export function bucketOf(r: { readonly name: string; readonly kind: string }): BucketRemote | undefined {
  if (isBucketRemote(r)) return r;
  const remote = r as { readonly name: string; readonly kind: string } & Readonly<Record<string, unknown>>;
  if (remote.kind === 'aws' && typeof remote.bucket === 'string') {
    return {
      name: remote.name,
      kind: 's3',
      bucket: remote.bucket,
      ...(typeof remote.region === 'string' ? { region: remote.region } : {}),
      ...(typeof remote.profile === 'string' ? { profile: remote.profile } : {}),
    };
  }
  return undefined;
}

/** Opens the bucket: the folder code, or the S3 SDK, loaded now. */
export async function openBucket(remote: BucketRemote): Promise<Bucket> {
  if (remote.kind === 'folder') {
    const { FolderBucket } = await import('./folder-bucket.js');
    return new FolderBucket(remote.path);
  }
  const { openS3Bucket } = await import('./s3-bucket.js');
  return openS3Bucket({
    bucket: remote.bucket,
    ...(remote.prefix ? { prefix: remote.prefix } : {}),
    ...(remote.region ? { region: remote.region } : {}),
    ...(remote.profile ? { profile: remote.profile } : {}),
  });
}
