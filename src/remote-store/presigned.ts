/**
 * Moving objects between an instance and the team bucket without the user's credentials ever
 * reaching the instance: dstack, which holds them, signs one URL per object (a GET for what the
 * instance must read, a PUT of exactly the object's size for what it must write), valid for minutes,
 * and the instance runs a plain shell script of `curl` calls against them. Each object is checked
 * against its hash on the instance before it is used (downloads) or sent (uploads): a URL cannot be
 * used to plant other bytes under an object's name, since every read from the bucket verifies too.
 */
import { DstackError } from '../engine/errors.js';
import type { ContentHash } from '../engine/types.js';
import type { BucketObjectStore } from './bucket-objects.js';

/** How long a signed URL stays valid: long enough for a large transfer, short enough not to matter after. */
export const URL_SECONDS = 3600;

export interface SignedTransfer {
  readonly hash: ContentHash;
  readonly size: number;
  /** The file on the instance: where a download goes, what an upload sends. */
  readonly path: string;
  readonly url: string;
}

/** Signs a GET for each object the instance must read, a PUT for each it must write. */
export async function signTransfers(
  objects: BucketObjectStore,
  items: readonly { readonly hash: ContentHash; readonly size: number; readonly path: string }[],
  direction: 'get' | 'put',
  seconds = URL_SECONDS,
): Promise<SignedTransfer[]> {
  const sign = direction === 'get' ? objects.presignGet : objects.presignPut;
  if (!sign) {
    throw new DstackError('DS0268', `the team bucket ${objects.bucket.where} has no signed URLs (a shared folder)`, {
      hint: 'an instance reaches a shared folder only by mounting it; use an S3 bucket for remote runs, or let dstack carry the files over SSH',
    });
  }
  return Promise.all(
    items.map(async (i) => ({ ...i, url: direction === 'get' ? await objects.presignGet!(i.hash, seconds) : await objects.presignPut!(i.hash, i.size, seconds) })),
  );
}

/** A single-quoted shell word. */
const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * A POSIX sh script that downloads each object to its path through its signed URL, checks its
 * sha256 and size, and renames it into place only then (a temp file beside it otherwise removed).
 * It exits non-zero on the first failure, naming the object.
 */
export function downloadScript(items: readonly SignedTransfer[]): string {
  const lines = ['set -eu', 'fail() { echo "dstack: $1" >&2; exit 1; }'];
  for (const i of items) {
    const tmp = `${i.path}.dstack-part`;
    lines.push(
      `curl -fsS --retry 5 --retry-all-errors -o ${q(tmp)} ${q(i.url)} || fail ${q(`download of ${i.hash} failed`)}`,
      `[ "$(sha256sum < ${q(tmp)} | cut -c1-64)" = ${q(i.hash)} ] || { rm -f ${q(tmp)}; fail ${q(`object ${i.hash} arrived damaged`)}; }`,
      `mv -f ${q(tmp)} ${q(i.path)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * A POSIX sh script that checks each file against its hash and PUTs it through its signed URL (the
 * URL is signed for exactly that size). Files that changed since they were hashed are refused.
 */
export function uploadScript(items: readonly SignedTransfer[]): string {
  const lines = ['set -eu', 'fail() { echo "dstack: $1" >&2; exit 1; }'];
  for (const i of items) {
    lines.push(
      `[ "$(sha256sum < ${q(i.path)} | cut -c1-64)" = ${q(i.hash)} ] || fail ${q(`${i.path} changed since it was hashed`)}`,
      `curl -fsS --retry 5 --retry-all-errors -T ${q(i.path)} ${q(i.url)} -o /dev/null || fail ${q(`upload of ${i.hash} failed`)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
