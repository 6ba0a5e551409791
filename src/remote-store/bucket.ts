/**
 * A bucket: keys to bytes, the little a team store needs from S3, from a shared folder (an NFS or
 * SMB mount), and later from GCS. Everything above it — objects by content, run records, the
 * fingerprint index, tags, logs (./layout.ts) — is written once against this interface, and one
 * contract suite (test/integration/bucket-contract.ts) runs against every implementation.
 *
 * What an implementation promises:
 * - A key appears complete or not at all: no reader ever sees half an object (S3 by nature; a
 *   folder by writing to a temporary file and linking it into place).
 * - `createOnly` writes are create-only for real, under concurrent writers on other machines: S3's
 *   conditional `If-None-Match: *` (412 when the key exists), a folder's `link(2)` (EEXIST). Exactly
 *   one of several racing writers gets `true`.
 * - `list` is lexicographic by key (S3's order), so a listing can start after a key and stop early.
 * - Transient failures (a 500, 503 SlowDown, a connection reset) are retried with backoff before an
 *   error reaches the caller; what remains is a DstackError DS0260–DS0263 that names the bucket, the
 *   call and, for a refusal, the principal.
 */
import type { Readable } from 'node:stream';

export interface BucketEntry {
  readonly key: string;
  readonly size: number;
}

export interface WriteOptions {
  /** Write only if the key does not exist; the write then reports false and changes nothing. */
  readonly createOnly?: boolean;
  readonly signal?: AbortSignal;
}

export interface PartsOptions extends WriteOptions {
  /** The whole object's size, known up front. */
  readonly size: number;
  /**
   * Called after the last part was read and before the object is committed. Throwing keeps the
   * object from ever appearing (an S3 multipart upload is aborted, a folder's temp file removed).
   */
  readonly beforeCommit: () => void;
  /** Bytes of the object that reached the bucket so far (for a progress bar). */
  readonly onProgress?: (bytes: number) => void;
}

export interface ListOptions {
  /** Only the keys after this one. */
  readonly startAfter?: string;
  /** At most this many keys (up to 1,000: on S3, one request). */
  readonly maxKeys?: number;
  readonly signal?: AbortSignal;
}

/** Parts of a large object are this big (S3's minimum is 5 MiB); smaller objects are one write. */
export const PART_SIZE = 8 * 1024 * 1024;

export interface Bucket {
  /** `s3://team-bucket/prefix` or `/mnt/team`: where it is, for messages. */
  readonly where: string;
  /** Checks that the bucket exists and can be listed; DS0260/DS0261/DS0262/DS0274 otherwise. */
  check(signal?: AbortSignal): Promise<void>;
  /** The object's bytes; undefined when there is no such key. For small records. */
  read(key: string, signal?: AbortSignal): Promise<Buffer | undefined>;
  /** The object as a stream; undefined when there is no such key. */
  stream(key: string, signal?: AbortSignal): Promise<Readable | undefined>;
  /** The object's size; undefined when there is no such key. */
  head(key: string, signal?: AbortSignal): Promise<number | undefined>;
  /** Writes a whole object; false when `createOnly` found the key taken (nothing written). */
  write(key: string, body: Buffer, options?: WriteOptions): Promise<boolean>;
  /**
   * Writes a large object from its parts (each PART_SIZE but the last): a multipart upload on S3,
   * whose parts are sent while the next ones are read. Nothing appears unless every part arrived and
   * `beforeCommit` passed; a failure aborts the upload so no part is left behind.
   */
  writeParts(key: string, parts: AsyncIterable<Buffer>, options: PartsOptions): Promise<boolean>;
  /** Keys under `prefix`, in lexicographic order, optionally only those after `startAfter`. */
  list(prefix: string, options?: ListOptions): AsyncIterable<BucketEntry>;
  /** The next path segments under `prefix` (`a/b/` under `a/`), as S3's delimiter listing gives them. */
  listFolders(prefix: string, signal?: AbortSignal): Promise<readonly string[]>;
  /** Deletes a key; nothing happens when there is none. */
  remove(key: string, signal?: AbortSignal): Promise<void>;
  /** A URL that GETs the key for `seconds` with no other credentials. Absent: no URLs (a folder). */
  presignGet?(key: string, seconds: number): Promise<string>;
  /** A URL that PUTs the key (exactly `size` bytes) for `seconds`. Absent: no URLs. */
  presignPut?(key: string, size: number, seconds: number): Promise<string>;
  /** Creates the bucket (after DS0260 offered it). Absent: nothing to create (a folder is made by hand). */
  create?(signal?: AbortSignal): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** Reads a stream of parts into PART_SIZE buffers (the last one shorter). */
export async function* toParts(source: AsyncIterable<unknown>, partSize = PART_SIZE): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of source) {
    let b = chunk as Buffer;
    while (b.length > 0) {
      const take = Math.min(b.length, partSize - pendingBytes);
      pending.push(b.subarray(0, take));
      pendingBytes += take;
      b = b.subarray(take);
      if (pendingBytes === partSize) {
        yield Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}
