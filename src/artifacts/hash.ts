/** Content hashing: sha256 streamed in large chunks, so hashing runs at disk speed. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { asContentHash, type ContentHash } from '../engine/types.js';

/** Read size for hashing and copying; large reads keep syscalls and event-loop turns few. */
export const CHUNK_SIZE = 1 << 20;

const HASH_RE = /^[0-9a-f]{64}$/;

export const isContentHash = (s: unknown): s is ContentHash => typeof s === 'string' && HASH_RE.test(s);

export async function hashFile(path: string): Promise<{ readonly hash: ContentHash; readonly size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK_SIZE })) {
    const b = chunk as Buffer;
    size += b.length;
    h.update(b);
  }
  return { hash: asContentHash(h.digest('hex')), size };
}
