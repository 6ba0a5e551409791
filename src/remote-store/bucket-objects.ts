/**
 * Objects by content in a bucket (`objects/sha256/ab/<hash>`, the local store's names), the
 * engine's ObjectStore (src/engine/objects.ts) for S3 and a shared folder alike.
 *
 * - Existence in batches: listings, never a request per object. The keys sort as their hashes
 *   do, so the hashes asked, sorted, are answered by walking the listing from just before each
 *   (see statMany): 10,000 hashes cost 16 pages in a bucket of 10,000 objects, a handful a handful.
 * - Puts are verified before anything is committed: an object up to PART_SIZE is read whole and
 *   hashed before it is sent (so every retry resends the same checked bytes), or comes from the
 *   local store already proved (`putVerified`: its record, no second hash); a larger one goes up
 *   in parts, hashed as they are read, and the upload is committed only if the whole hashes to its
 *   name. Create-only: an object already there is never overwritten, and of two pushers racing on
 *   the same object one creates it and the other finds it there.
 * - Gets are verified as they stream; an object that is not the bytes it is named after (or not the
 *   size the manifest says) is moved to `quarantine/` in the bucket — never served again — and the
 *   stream errors with DS0265 instead of ending.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { DstackError } from '../engine/errors.js';
import { forEachLimit } from '../engine/limit.js';
import type { GetOptions, ObjectInfo, ObjectStore, PutOptions } from '../engine/objects.js';
import { asContentHash, type ContentHash } from '../engine/types.js';
import { PART_SIZE, toParts, type Bucket } from './bucket.js';

const HASH_RE = /^[0-9a-f]{64}$/;
/** Keys a listing request returns at most: S3's page. */
const PAGE_KEYS = 1000;

export interface BucketPutOptions extends PutOptions {
  /** Bytes of this object that reached the bucket so far. */
  readonly onProgress?: (bytes: number) => void;
}

export interface BucketObjectStoreOptions {
  /** Where the objects live: `objects/sha256/` (files) or `manifests/sha256/` (manifests). */
  readonly prefix?: string;
  /** Listings in flight at once for `statMany`. */
  readonly concurrency?: number;
  /** Keys per listing request for `statMany` (default S3's 1,000). */
  readonly pageKeys?: number;
}

export class BucketObjectStore implements ObjectStore {
  readonly prefix: string;
  private readonly concurrency: number;
  private readonly pageKeys: number;
  /** Present when the bucket has URLs (S3), absent for a folder: see ObjectStore. */
  readonly presignGet?: (hash: ContentHash, seconds: number) => Promise<string>;
  readonly presignPut?: (hash: ContentHash, size: number, seconds: number) => Promise<string>;

  constructor(
    readonly bucket: Bucket,
    options: BucketObjectStoreOptions = {},
  ) {
    this.prefix = options.prefix ?? 'objects/sha256/';
    this.concurrency = options.concurrency ?? 16;
    this.pageKeys = options.pageKeys ?? PAGE_KEYS;
    const { presignGet, presignPut } = bucket;
    if (presignGet) this.presignGet = (hash, seconds) => presignGet.call(bucket, this.key(hash), seconds);
    if (presignPut) this.presignPut = (hash, size, seconds) => presignPut.call(bucket, this.key(hash), size, seconds);
  }

  key(hash: ContentHash): string {
    if (!HASH_RE.test(hash)) throw new DstackError('DS0301', `malformed content hash '${String(hash)}'`);
    return `${this.prefix}${hash.slice(0, 2)}/${hash}`;
  }

  /**
   * The size of each of `hashes` the bucket holds (present, not verified). The hashes asked are
   * sorted and cut into `concurrency` runs of neighbours; each run is a walk through the listing
   * that asks for a page starting just before its next unanswered hash, so a page never lists keys
   * below it (a dense ask of a bucket holding about what is asked: a page per run, 16 requests for
   * 10,000 hashes) and every page answers at least one hash, keys that are not objects aside (a
   * sparse ask of a big bucket: at most a request per hash, never a listing of the whole bucket).
   */
  async statMany(hashes: Iterable<ContentHash>, signal?: AbortSignal): Promise<Map<ContentHash, number>> {
    const wanted = [...new Set(hashes)].filter((h) => HASH_RE.test(h)).sort();
    const found = new Map<ContentHash, number>();
    const runs = Math.min(this.concurrency, wanted.length);
    const chunks = Array.from({ length: runs }, (_, i) => wanted.slice(Math.floor((i * wanted.length) / runs), Math.floor(((i + 1) * wanted.length) / runs)));
    await forEachLimit(chunks, this.concurrency, async (chunk) => {
      const keys = chunk.map((h) => this.key(h));
      // Pages are sized by the keys listed per hash so far (first guess: one, a second push's
      // case), so a run does not list the keys of the runs after it; a server renders every key of
      // a page (moto: a sixth of a millisecond each).
      let listedAll = 0;
      let next = 0;
      let last = '';
      while (next < keys.length) {
        const perHash = next === 0 ? 1 : listedAll / next;
        const page = Math.min(this.pageKeys, Math.ceil((keys.length - next) * perHash * 1.1) + 8);
        // Just before the next hash asked, or after the last key seen if that is further (keys
        // that sort between the two are not objects, but a page of them must not be asked twice).
        const from = keys[next]!.slice(0, -1);
        let listed = 0;
        for await (const e of this.bucket.list(this.prefix, { startAfter: last > from ? last : from, maxKeys: page, ...(signal ? { signal } : {}) })) {
          listed++;
          last = e.key;
          while (next < keys.length && keys[next]! < e.key) next++; // passed over: not there
          if (keys[next] === e.key) found.set(chunk[next++]!, e.size);
          if (next === keys.length) break;
        }
        listedAll += listed;
        // A short page is the end of the listing: whatever is left is not there.
        if (listed < page) break;
      }
    });
    return found;
  }

  async hasMany(hashes: Iterable<ContentHash>): Promise<Set<ContentHash>> {
    return new Set((await this.statMany(hashes)).keys());
  }

  async put(hash: ContentHash, size: number, open: () => Readable | Promise<Readable>, options: BucketPutOptions = {}): Promise<{ readonly created: boolean }> {
    const key = this.key(hash);
    const signal = options.signal;
    const refuse = (got: string, gotSize: number): DstackError =>
      new DstackError('DS0304', `the bytes given for object ${hash} hash to ${got.slice(0, 12)}… (${gotSize} bytes, not ${size}); nothing was sent`, {
        hint: 'the local store checks its objects with `dstack store verify`',
      });
    if (size <= PART_SIZE) {
      const chunks: Buffer[] = [];
      for await (const c of await open()) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      const got = createHash('sha256').update(body).digest('hex');
      if (got !== hash || body.length !== size) throw refuse(got, body.length);
      return this.putVerified(hash, body, options);
    }
    const h = createHash('sha256');
    let read = 0;
    async function* hashed(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const part of source) {
        h.update(part);
        read += part.length;
        yield part;
      }
    }
    const created = await this.bucket.writeParts(key, hashed(toParts(await open())), {
      size,
      createOnly: true,
      ...(signal ? { signal } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      beforeCommit: () => {
        const got = h.digest('hex');
        if (got !== hash || read !== size) throw refuse(got, read);
      },
    });
    return { created };
  }

  /**
   * Puts an object whose bytes the caller has proved to be `hash` (the local store's
   * `readVerified`: its record, or a hash as it read them), so they are not hashed again here.
   */
  async putVerified(hash: ContentHash, body: Buffer, options: BucketPutOptions = {}): Promise<{ readonly created: boolean }> {
    const key = this.key(hash);
    const signal = options.signal;
    const created = await this.bucket.write(key, body, { createOnly: true, ...(signal ? { signal } : {}) });
    options.onProgress?.(created ? body.length : 0);
    return { created: created || (await this.replaceIfWrongSize(key, body, body.length, signal)) };
  }

  /**
   * An object of the wrong size under this name is damaged (a truncated upload by some other tool):
   * it goes to quarantine and the good bytes take its place. One of the right size is kept: reads
   * verify it, and a damaged one is quarantined then.
   */
  private async replaceIfWrongSize(key: string, body: Buffer, size: number, signal?: AbortSignal): Promise<boolean> {
    const there = await this.bucket.head(key, signal);
    if (there === undefined || there === size) return false;
    await this.quarantine(key);
    return this.bucket.write(key, body, { createOnly: true, ...(signal ? { signal } : {}) });
  }

  get(hash: ContentHash, options: GetOptions = {}): Readable {
    return Readable.from(this.verifiedChunks(hash, options), { objectMode: false });
  }

  private async *verifiedChunks(hash: ContentHash, options: GetOptions): AsyncGenerator<Buffer> {
    const key = this.key(hash);
    const body = await this.bucket.stream(key, options.signal);
    if (!body) {
      throw new DstackError('DS0264', `object ${hash} is missing from the bucket ${this.bucket.where}`, {
        hint: 'push the run that made it again from a home that has it (`dstack push RUN`), or run its workflow again',
      });
    }
    const h = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of body) {
        const b = chunk as Buffer;
        size += b.length;
        if (options.size !== undefined && size > options.size) throw await this.damaged(hash, `it holds more than the ${options.size} bytes recorded`);
        h.update(b);
        yield b;
      }
    } finally {
      body.destroy();
    }
    if (options.size !== undefined && size !== options.size) throw await this.damaged(hash, `it holds ${size} bytes, not ${options.size}`);
    const got = h.digest('hex');
    if (got !== hash) throw await this.damaged(hash, `its bytes hash to ${got.slice(0, 12)}…`);
  }

  private async damaged(hash: ContentHash, why: string): Promise<DstackError> {
    const to = await this.quarantine(this.key(hash)).catch(() => undefined);
    return new DstackError('DS0265', `object ${hash} in the bucket ${this.bucket.where} is damaged (${why})${to ? `; it was moved to ${to}` : ''}`, {
      hint: 'push the run that made it again from a home that has it (`dstack push RUN`): the good copy takes its place',
    });
  }

  /** Moves a damaged object out of `objects/` so it is never served (or counted as present) again. */
  async quarantine(key: string): Promise<string | undefined> {
    const to = `quarantine/${key.slice(key.lastIndexOf('/') + 1)}-${Date.now()}-${randomBytes(3).toString('hex')}`;
    const body = await this.bucket.stream(key);
    if (!body) return undefined;
    const size = await this.bucket.head(key);
    if (size !== undefined && size <= PART_SIZE) {
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(c as Buffer);
      await this.bucket.write(to, Buffer.concat(chunks));
    } else {
      await this.bucket.writeParts(to, toParts(body), { size: size ?? 0, beforeCommit: () => undefined });
    }
    await this.bucket.remove(key);
    return to;
  }

  async *list(): AsyncIterable<ObjectInfo> {
    for await (const e of this.bucket.list(this.prefix)) {
      const name = e.key.slice(e.key.lastIndexOf('/') + 1);
      if (HASH_RE.test(name) && e.key === this.key(asContentHash(name))) yield { hash: asContentHash(name), size: e.size };
    }
  }
}
