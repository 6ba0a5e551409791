/**
 * A bucket on S3 — the only file that imports `@aws-sdk/client-s3` (and its presigner), through
 * `await import()`, so nothing but a command that talks to the bucket loads the SDK.
 *
 * Credentials come from the SDK's standard chain (environment, shared files with the remote's
 * profile, SSO, an instance role); dstack never reads or stores them. The SDK honours
 * `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` (how the tests reach moto); with a custom endpoint keys
 * are addressed path-style, as moto and most S3-compatible servers want.
 *
 * Retries are the SDK's standard strategy with more attempts than its default: a 500, a 503
 * SlowDown, a throttle or a reset connection is retried with exponential backoff and jitter. Every
 * body is a Buffer (whole objects up to PART_SIZE, then parts), so each retry can send it again.
 */
import type * as S3Sdk from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { DstackError } from '../engine/errors.js';
import type { Bucket, BucketEntry, ListOptions, PartsOptions, WriteOptions } from './bucket.js';
import { parseListing, type ListingPage } from './s3-listing.js';

export interface S3BucketOptions {
  readonly bucket: string;
  /** Keys are written under this prefix (`team/`), so one bucket can hold several stores. */
  readonly prefix?: string;
  readonly region?: string;
  readonly profile?: string;
  /** Attempts per call (default 6). */
  readonly maxAttempts?: number;
}

type Sdk = typeof S3Sdk;

/** What the SDK's deserializer is given once s3-listing.ts has read a listing. */
const EMPTY_LISTING = Buffer.from('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult></ListBucketResult>');

/** Parts of one multipart upload in flight at once. */
const PARTS_IN_FLIGHT = 4;

export function customS3Endpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
}

/** An ES module's namespace, or (bundled from CommonJS) the same under `default`. */
const interop = <T extends object>(m: T): T => ((m as { default?: T }).default ?? m) as T;

export async function openS3Bucket(options: S3BucketOptions): Promise<Bucket> {
  // The SDK warns on every client made under Node 20 that its releases of 2027 will need Node 22:
  // nothing a dstack user can act on, and it would land in the middle of dstack's own output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const sdk = interop(await import('@aws-sdk/client-s3'));
  const endpoint = customS3Endpoint();
  const client = new sdk.S3Client({
    ...(options.region ? { region: options.region } : {}),
    ...(options.profile ? { profile: options.profile } : {}),
    ...(endpoint ? { forcePathStyle: true } : {}),
    maxAttempts: options.maxAttempts ?? 6,
    retryMode: 'standard',
  });
  return new S3Bucket(options, sdk, client);
}

const REFUSED = new Set(['AccessDenied', 'Forbidden', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'AllAccessDisabled', 'AccountProblem']);

class S3Bucket implements Bucket {
  readonly where: string;
  private readonly prefix: string;

  constructor(
    private readonly options: S3BucketOptions,
    private readonly sdk: Sdk,
    private readonly client: S3Sdk.S3Client,
  ) {
    this.prefix = options.prefix ? `${options.prefix.replace(/^\/+|\/+$/g, '')}/` : '';
    this.where = `s3://${options.bucket}${this.prefix ? `/${this.prefix.slice(0, -1)}` : ''}`;
  }

  private async send<T>(call: string, key: string | undefined, command: object, signal?: AbortSignal): Promise<T> {
    try {
      return (await this.client.send(command as never, signal ? { abortSignal: signal } : {})) as T;
    } catch (e) {
      throw await this.translate(e, call, key);
    }
  }

  /** The SDK's errors in dstack's words: which call, on what, and what to do. */
  private async translate(e: unknown, call: string, key: string | undefined): Promise<unknown> {
    if (e instanceof DstackError) return e;
    const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number; attempts?: number } };
    const name = err.name ?? '';
    const status = err.$metadata?.httpStatusCode;
    const what = `s3:${call} on ${this.where}${key ? `/${key}` : ''}`;
    if (name === 'AbortError') return e;
    if (name === 'NoSuchBucket') {
      return new DstackError('DS0260', `the bucket ${this.options.bucket} does not exist (${what})`, {
        hint: `create it: dstack config s3 --name NAME --bucket ${this.options.bucket} --create --force (or in the AWS console)`,
      });
    }
    if (name === 'CredentialsProviderError' || /could not load credentials/i.test(err.message ?? '')) {
      return new DstackError('DS0261', `no AWS credentials found for ${what}`, {
        hint: 'set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, run `aws sso login`, or give the remote a profile: dstack config s3 … --profile PROFILE',
      });
    }
    if (REFUSED.has(name) || status === 403) {
      return new DstackError('DS0261', `${what} was refused for ${await this.principal()}: ${name || status}`, {
        hint: `the principal needs s3:${call} on arn:aws:s3:::${this.options.bucket}${key === undefined ? '' : '/*'}; check its policy, or \`aws sts get-caller-identity\``,
      });
    }
    if (status === undefined) {
      const endpoint = customS3Endpoint() ?? `S3${this.options.region ? ` in ${this.options.region}` : ''}`;
      return new DstackError('DS0262', `cannot reach ${endpoint} (${what}): ${err.message ?? String(e)}`, {
        hint: 'check the network (and AWS_ENDPOINT_URL if set), then try again: what was sent is kept',
      });
    }
    const attempts = err.$metadata?.attempts;
    return new DstackError('DS0263', `${what} failed: ${name || `HTTP ${status}`}: ${err.message ?? ''}${attempts ? ` (after ${attempts} attempts)` : ''}`, {
      hint: 'try again later: what was sent is kept, and the next attempt sends only the rest',
    });
  }

  /** Who the calls are made as, for a refusal: the access key (never the secret) and the profile. */
  private async principal(): Promise<string> {
    try {
      const creds = await this.client.config.credentials();
      const profile = this.options.profile ?? process.env.AWS_PROFILE;
      return `access key ${creds.accessKeyId}${profile ? ` (profile ${profile})` : ''}`;
    } catch {
      return 'the current AWS credentials';
    }
  }

  private k(key: string): string {
    return this.prefix + key;
  }

  async check(signal?: AbortSignal): Promise<void> {
    await this.send('ListBucket', undefined, new this.sdk.ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: this.prefix, MaxKeys: 1 }), signal);
  }

  async create(signal?: AbortSignal): Promise<void> {
    const region = this.options.region ?? (await this.client.config.region());
    const conf = region && region !== 'us-east-1' ? { CreateBucketConfiguration: { LocationConstraint: region as S3Sdk.BucketLocationConstraint } } : {};
    await this.send('CreateBucket', undefined, new this.sdk.CreateBucketCommand({ Bucket: this.options.bucket, ...conf }), signal);
  }

  async read(key: string, signal?: AbortSignal): Promise<Buffer | undefined> {
    const body = await this.stream(key, signal);
    if (!body) return undefined;
    const chunks: Buffer[] = [];
    try {
      for await (const c of body) chunks.push(c as Buffer);
    } catch (e) {
      throw await this.translate(e, 'GetObject', key);
    }
    return Buffer.concat(chunks);
  }

  async stream(key: string, signal?: AbortSignal): Promise<Readable | undefined> {
    try {
      const r = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.options.bucket, Key: this.k(key) }), signal ? { abortSignal: signal } : {});
      return r.Body as Readable;
    } catch (e) {
      if ((e as { name?: string }).name === 'NoSuchKey') return undefined;
      throw await this.translate(e, 'GetObject', key);
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<number | undefined> {
    try {
      const r = await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.options.bucket, Key: this.k(key) }), signal ? { abortSignal: signal } : {});
      return r.ContentLength ?? 0;
    } catch (e) {
      const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (err.name === 'NotFound' || err.name === 'NoSuchKey' || err.$metadata?.httpStatusCode === 404) return undefined;
      throw await this.translate(e, 'HeadObject', key);
    }
  }

  async write(key: string, body: Buffer, options: WriteOptions = {}): Promise<boolean> {
    const command = new this.sdk.PutObjectCommand({
      Bucket: this.options.bucket,
      Key: this.k(key),
      Body: body,
      ContentLength: body.length,
      ...(options.createOnly ? { IfNoneMatch: '*' } : {}),
    });
    return this.conditional('PutObject', key, () => this.client.send(command, options.signal ? { abortSignal: options.signal } : {}));
  }

  /**
   * A conditional write: 412 means the key is taken. S3 answers 409 ConditionalRequestConflict
   * while a concurrent conditional write to the key is in progress; asking again settles it.
   */
  private async conditional(call: string, key: string, send: () => Promise<unknown>): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await send();
        return true;
      } catch (e) {
        const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (err.name === 'PreconditionFailed' || err.$metadata?.httpStatusCode === 412) return false;
        if ((err.name === 'ConditionalRequestConflict' || err.$metadata?.httpStatusCode === 409) && attempt < 5) {
          await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
          continue;
        }
        throw await this.translate(e, call, key);
      }
    }
  }

  async writeParts(key: string, parts: AsyncIterable<Buffer>, options: PartsOptions): Promise<boolean> {
    const Bucket = this.options.bucket;
    const Key = this.k(key);
    const signal = options.signal;
    const created = await this.send<S3Sdk.CreateMultipartUploadOutput>('CreateMultipartUpload', key, new this.sdk.CreateMultipartUploadCommand({ Bucket, Key }), signal);
    const UploadId = created.UploadId!;
    try {
      const done: { PartNumber: number; ETag: string }[] = [];
      const inFlight = new Set<Promise<void>>();
      let sent = 0;
      let n = 0;
      // The first part that failed; parts in flight are never left with a rejection nobody handles.
      let failure: { error: unknown } | undefined;
      for await (const part of parts) {
        if (failure) throw failure.error;
        const PartNumber = ++n;
        const command = new this.sdk.UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body: part, ContentLength: part.length });
        const tracked: Promise<void> = this.send<S3Sdk.UploadPartOutput>('UploadPart', key, command, signal)
          .then(
            (r) => {
              done.push({ PartNumber, ETag: r.ETag! });
              sent += part.length;
              options.onProgress?.(sent);
            },
            (e: unknown) => void (failure ??= { error: e }),
          )
          .finally(() => inFlight.delete(tracked));
        inFlight.add(tracked);
        if (inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      if (failure) throw failure.error;
      options.beforeCommit();
      done.sort((a, b) => a.PartNumber - b.PartNumber);
      const complete = new this.sdk.CompleteMultipartUploadCommand({
        Bucket,
        Key,
        UploadId,
        MultipartUpload: { Parts: done },
        ...(options.createOnly ? { IfNoneMatch: '*' } : {}),
      });
      const placed = await this.conditional('CompleteMultipartUpload', key, () => this.client.send(complete, signal ? { abortSignal: signal } : {}));
      if (!placed) await this.abortUpload(Key, UploadId);
      return placed;
    } catch (e) {
      await this.abortUpload(Key, UploadId);
      throw e;
    }
  }

  /** Aborts a multipart upload so no part is left to pay for; a failure here is not the caller's. */
  private async abortUpload(Key: string, UploadId: string): Promise<void> {
    await this.client.send(new this.sdk.AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key, UploadId })).catch(() => undefined);
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<BucketEntry> {
    let token: string | undefined;
    let left = options.maxKeys ?? Infinity;
    const startAfter = options.startAfter === undefined ? undefined : this.k(options.startAfter);
    do {
      const page = await this.listPage(
        prefix,
        {
          Prefix: this.k(prefix),
          ...(Number.isFinite(left) ? { MaxKeys: Math.min(left, 1000) } : {}),
          ...(token ? { ContinuationToken: token } : startAfter ? { StartAfter: startAfter } : {}),
        },
        options.signal,
      );
      for (const e of page.entries) {
        if (left-- <= 0) return;
        yield { key: e.key.slice(this.prefix.length), size: e.size };
      }
      token = page.truncated && left > 0 ? page.nextToken : undefined;
    } while (token);
  }

  /**
   * One ListObjectsV2 request, its answer read by s3-listing.ts rather than the SDK's deserializer
   * (a hundred times faster): the raw answer is taken just inside the deserializer, which is then
   * handed an empty listing. An answer that parser does not read goes to the SDK's as before.
   */
  private async listPage(prefix: string, input: Omit<S3Sdk.ListObjectsV2Request, 'Bucket'>, signal?: AbortSignal): Promise<ListingPage> {
    const command = new this.sdk.ListObjectsV2Command({ Bucket: this.options.bucket, ...input });
    let page: ListingPage | undefined;
    command.middlewareStack.add(
      (next) => async (args) => {
        const r = (await next(args)) as { response: { statusCode?: number; body?: unknown } };
        const res = r.response;
        page = undefined; // a retried request's answer replaces an earlier one
        if (res.statusCode === 200 && res.body && typeof (res.body as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
          const chunks: Buffer[] = [];
          for await (const c of res.body as AsyncIterable<Buffer>) chunks.push(c);
          const xml = Buffer.concat(chunks);
          page = parseListing(xml.toString('utf8'));
          res.body = page ? EMPTY_LISTING : xml;
        }
        return r as never;
      },
      { step: 'deserialize', priority: 'low', name: 'dstackListingParser' },
    );
    const r: S3Sdk.ListObjectsV2Output = await this.send('ListBucket', prefix, command, signal);
    return page ?? { entries: (r.Contents ?? []).flatMap((o) => (o.Key ? [{ key: o.Key, size: o.Size ?? 0 }] : [])), truncated: r.IsTruncated === true, ...(r.NextContinuationToken ? { nextToken: r.NextContinuationToken } : {}) };
  }

  async listFolders(prefix: string, signal?: AbortSignal): Promise<readonly string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const r: S3Sdk.ListObjectsV2Output = await this.send(
        'ListBucket',
        prefix,
        new this.sdk.ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: this.k(prefix), Delimiter: '/', ...(token ? { ContinuationToken: token } : {}) }),
        signal,
      );
      for (const p of r.CommonPrefixes ?? []) if (p.Prefix) out.push(p.Prefix.slice(this.prefix.length));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  }

  async remove(key: string, signal?: AbortSignal): Promise<void> {
    await this.send('DeleteObject', key, new this.sdk.DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.k(key) }), signal);
  }

  async presignGet(key: string, seconds: number): Promise<string> {
    const { getSignedUrl } = interop(await import('@aws-sdk/s3-request-presigner'));
    return getSignedUrl(this.client, new this.sdk.GetObjectCommand({ Bucket: this.options.bucket, Key: this.k(key) }), { expiresIn: seconds });
  }

  async presignPut(key: string, size: number, seconds: number): Promise<string> {
    const { getSignedUrl } = interop(await import('@aws-sdk/s3-request-presigner'));
    const command = new this.sdk.PutObjectCommand({ Bucket: this.options.bucket, Key: this.k(key), ContentLength: size });
    return getSignedUrl(this.client, command, { expiresIn: seconds, signableHeaders: new Set(['content-length']) });
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
