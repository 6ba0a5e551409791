/**
 * Small JSON documents (a code snapshot's manifest) kept as objects in the content-addressed
 * store, so they are stored once, named by their content, and pruned like any other object.
 */
import { randomBytes } from 'node:crypto';
import { unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DstackError } from '../engine/errors.js';
import type { ContentHash } from '../engine/types.js';
import type { ArtifactStore } from './types.js';

/** Stores `value` as JSON; the same value gives the same hash (keys in the order given). */
export async function putJson(store: ArtifactStore, value: unknown): Promise<ContentHash> {
  const tmp = join(tmpdir(), `dstack-json-${process.pid}-${randomBytes(6).toString('hex')}`);
  await writeFile(tmp, JSON.stringify(value), { mode: 0o600 });
  try {
    return (await store.putFile(tmp)).hash;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/**
 * The JSON object under `hash`, its bytes verified; undefined when the store does not have it
 * (pruned, never stored) or has it damaged (then quarantined, so it is not there any more either).
 */
export async function getJson<T>(store: ArtifactStore, hash: ContentHash): Promise<T | undefined> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of store.objects.get(hash)) chunks.push(chunk as Buffer);
  } catch (e) {
    if (e instanceof DstackError && (e.code === 'DS0303' || e.code === 'DS0304')) return undefined;
    throw e;
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
}
