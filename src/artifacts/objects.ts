/**
 * Small JSON documents (a code snapshot's manifest) kept as objects in the content-addressed
 * store, so they are stored once, named by their content, and pruned like any other object.
 */
import { randomBytes } from 'node:crypto';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/** The JSON object under `hash`; undefined when the store does not have it (pruned, never stored). */
export async function getJson<T>(store: ArtifactStore, hash: ContentHash): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(store.objectPath(hash), 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
