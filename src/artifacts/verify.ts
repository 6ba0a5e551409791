/**
 * `dstack store verify`'s look at the objects: every object read and hashed (or, with `quick`,
 * trusted when its "already verified" record still holds), a damaged one quarantined; and every
 * object a record refers to (directly, or through a listing object) looked for, so a missing one is
 * found too. Each fault is reported through the store's `onFault`: the jobs that made the object
 * stop being cache hits.
 */
import type { ContentHash } from '../engine/types.js';
import { forEachLimit } from '../engine/limit.js';
import { isContentHash } from './hash.js';
import type { LocalObjectStore } from './local-objects.js';

export interface ObjectsReport {
  /** Objects checked and their bytes. */
  readonly objects: number;
  readonly bytes: number;
  /** Damaged objects, and where each went (`objects/quarantine/…`). */
  readonly damaged: readonly { readonly hash: ContentHash; readonly quarantinedAs?: string }[];
  /** Objects a record refers to that the store does not have. */
  readonly missing: readonly ContentHash[];
}

export interface VerifyObjectsOptions {
  /** Every object the records refer to (gc's `liveObjects`); empty when the records cannot be read. */
  readonly referenced: ReadonlySet<ContentHash>;
  readonly quick?: boolean;
  /** Objects hashed at once (default 4: reading is the bottleneck). */
  readonly concurrency?: number;
}

export async function verifyObjects(objects: LocalObjectStore, options: VerifyObjectsOptions): Promise<ObjectsReport> {
  const listed: { hash: ContentHash; size: number }[] = [];
  for await (const o of objects.list()) listed.push(o);
  const damaged: { hash: ContentHash; quarantinedAs?: string }[] = [];
  let bytes = 0;
  await forEachLimit(listed, options.concurrency ?? 4, async (o) => {
    const r = await objects.check(o.hash, { full: options.quick !== true });
    if (r === 'ok') bytes += o.size;
    else if (r === 'damaged') {
      const at = objects.quarantined.get(o.hash);
      damaged.push({ hash: o.hash, ...(at ? { quarantinedAs: at } : {}) });
    }
  });
  const present = new Set(listed.map((o) => o.hash));
  const missing: ContentHash[] = [];
  for (const hash of options.referenced) {
    // One quarantined just now is reported as damaged, not again as missing.
    if (isContentHash(hash) && !present.has(hash) && (await objects.check(hash)) === 'missing') missing.push(hash);
  }
  damaged.sort((a, b) => (a.hash < b.hash ? -1 : 1));
  missing.sort();
  return { objects: listed.length, bytes, damaged, missing };
}
