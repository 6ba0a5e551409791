/**
 * Moving objects between the local store and the team bucket: only what the other side lacks
 * (one batched existence check), many at once, each verified on the way (the bucket's put checks
 * what it sends, the local put what it receives). An interrupted transfer loses nothing: what
 * arrived is complete under its name, and the next one sends only the rest.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { forEachLimit } from '../engine/limit.js';
import { isFileObjectStore, type Manifest, type ObjectStore } from '../engine/objects.js';
import type { ContentHash } from '../engine/types.js';
import type { BucketObjectStore } from './bucket-objects.js';
import { PART_SIZE } from './bucket.js';

/** Objects in flight at once: what the bars compare against (a plain parallel upload, 16 at a time). */
export const TRANSFER_CONCURRENCY = 16;

export interface TransferProgress {
  /** Objects to send (not already there) and bytes of them. */
  readonly objects: number;
  readonly bytes: number;
  readonly objectsDone: number;
  readonly bytesDone: number;
}

export interface TransferResult {
  /** Every object of the set, and how many of them (and bytes) had to be sent. */
  readonly total: { readonly objects: number; readonly bytes: number };
  readonly sent: { readonly objects: number; readonly bytes: number };
}

export interface TransferOptions {
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
  /** Called as bytes arrive (often: rendering throttles it). */
  readonly onProgress?: (p: TransferProgress) => void;
}

/** The files of some manifests, each content once. */
export function filesOf(manifests: Iterable<Manifest>): Map<ContentHash, number> {
  const files = new Map<ContentHash, number>();
  for (const m of manifests) for (const e of m.entries) if (e.type === 'file') files.set(e.hash, e.size);
  return files;
}

const sum = (files: ReadonlyMap<ContentHash, number>): number => [...files.values()].reduce((a, b) => a + b, 0);

/** Sends the objects the bucket does not have (or has with the wrong size: those are quarantined first). */
export async function uploadObjects(local: ObjectStore, remote: BucketObjectStore, files: ReadonlyMap<ContentHash, number>, options: TransferOptions = {}): Promise<TransferResult> {
  const there = await remote.statMany(files.keys(), options.signal);
  const missing = new Map<ContentHash, number>();
  for (const [hash, size] of files) {
    const found = there.get(hash);
    if (found === size) continue;
    if (found !== undefined) await remote.quarantine(remote.key(hash));
    missing.set(hash, size);
  }
  const progress = tracker(missing, options.onProgress);
  let sent = 0;
  let sentBytes = 0;
  await forEachLimit([...missing], options.concurrency ?? TRANSFER_CONCURRENCY, async ([hash, size]) => {
    let last = 0;
    const putOptions = {
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (bytes: number) => {
        progress.bytes(bytes - last);
        last = bytes;
      },
    };
    // A file of the local store is read directly once proved sound (cheaply, by its record): a small
    // one whole, in one read and with no second hash — what a plain upload of the file costs.
    const r = !isFileObjectStore(local)
      ? await remote.put(hash, size, () => local.get(hash, { size }), putOptions)
      : size <= PART_SIZE
        ? await remote.putVerified(hash, await local.readVerified(hash, size), putOptions)
        : await remote.put(hash, size, async () => createReadStream(await local.verifiedPath(hash), { highWaterMark: 1 << 20 }), putOptions);
    progress.bytes(size - last);
    progress.object();
    if (r.created) {
      sent++;
      sentBytes += size;
    }
  });
  return { total: { objects: files.size, bytes: sum(files) }, sent: { objects: sent, bytes: sentBytes } };
}

/** Brings the objects the local store lacks from the bucket, verified (a damaged one fails the fetch with DS0265). */
export async function fetchObjects(remote: BucketObjectStore, local: ObjectStore, files: ReadonlyMap<ContentHash, number>, options: TransferOptions = {}): Promise<TransferResult> {
  const have = await local.hasMany(files.keys());
  const missing = new Map([...files].filter(([h]) => !have.has(h)));
  const progress = tracker(missing, options.onProgress);
  let sentBytes = 0;
  await forEachLimit([...missing], options.concurrency ?? TRANSFER_CONCURRENCY, async ([hash, size]) => {
    await local.put(hash, size, () => counted(remote.get(hash, { size, ...(options.signal ? { signal: options.signal } : {}) }), progress.bytes), options.signal ? { signal: options.signal } : {});
    progress.object();
    sentBytes += size;
  });
  return { total: { objects: files.size, bytes: sum(files) }, sent: { objects: missing.size, bytes: sentBytes } };
}

function tracker(todo: ReadonlyMap<ContentHash, number>, report: TransferOptions['onProgress']) {
  const p = { objects: todo.size, bytes: sum(todo), objectsDone: 0, bytesDone: 0 };
  report?.({ ...p });
  return {
    bytes: (n: number): void => {
      if (n <= 0) return;
      p.bytesDone += n;
      report?.({ ...p });
    },
    object: (): void => {
      p.objectsDone++;
      report?.({ ...p });
    },
  };
}

/** The stream's chunks, telling `count` of each as it passes. */
function counted(source: AsyncIterable<unknown>, count: (n: number) => void): Readable {
  return Readable.from(
    (async function* () {
      for await (const c of source) {
        count((c as Buffer).length);
        yield c as Buffer;
      }
    })(),
    { objectMode: false },
  );
}
