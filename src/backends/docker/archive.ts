/**
 * Artifacts outside `/workflow` (src/artifacts/outside.ts) through the engine's archive API, the same
 * way on the local engine and on a pool host's engine reached through its forwarded socket:
 *
 * - saved after the job, before its container is removed: `GET /containers/{id}/archive?path=P` is a
 *   tar of P as the job left it, read entry by entry, each file hashed into the store as it streams
 *   (one file at a time on disk, never the whole tree in memory);
 * - restored into a dependent's container after create and before start: `PUT /containers/{id}/
 *   archive` with a tar made from the store, so the files land in the container's own writable layer
 *   (an environment gets modified: `pip install` into it) and nothing is bind-mounted.
 *
 * A tar from a container is the job's data, so nothing in it is trusted: names must stay under the
 * path asked for, hard links must name an earlier file of the same tar, fifos, sockets and devices
 * are skipped and named, and a file's bytes must be as many as its header says (tar's parser, strict).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, unlink } from 'node:fs/promises';
import { posix, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadEntry } from 'tar';
import { inContainer, isValidOutsideTarget } from '../../artifacts/outside.js';
import { makeManifest, validateManifest } from '../../artifacts/manifest.js';
import type { ArtifactStore, ManifestEntry } from '../../artifacts/types.js';
import { DstackError } from '../../engine/errors.js';
import { asContentHash, type ArtifactSpec, type ContentHash } from '../../engine/types.js';
import { isStatus, type DockerClient } from './docker.js';

export interface SaveOutsideOptions {
  readonly client: DockerClient;
  /** The job's container, ended but not removed. */
  readonly container: string;
  /** Outside artifacts only (`absolute: true`). */
  readonly specs: readonly ArtifactSpec[];
  /** What `~` is in this container: the image's HOME. */
  readonly home: string;
  readonly store: ArtifactStore;
  /** A folder on this machine for the one file being hashed at a time. */
  readonly tmpDir: string;
  readonly signal?: AbortSignal;
}

export interface SavedOutside {
  readonly entries: readonly ManifestEntry[];
  readonly missing: readonly string[];
  /** Entries not kept (fifos, devices, a hard link to nothing before it), with why. */
  readonly skipped: readonly string[];
  readonly newBytes: number;
}

export async function saveOutside(o: SaveOutsideOptions): Promise<SavedOutside> {
  const entries: ManifestEntry[] = [];
  const missing: string[] = [];
  const skipped: string[] = [];
  let newBytes = 0;
  await mkdir(o.tmpDir, { recursive: true });
  for (const spec of o.specs) {
    const at = inContainer(spec.path, o.home);
    let res;
    try {
      res = await o.client.open('GET', `/containers/${o.container}/archive`, { query: { path: at }, signal: o.signal, timeoutMs: o.client.timeouts.archive, what: `read ${at} from the container` });
    } catch (e) {
      if (isStatus(e, 404)) {
        missing.push(spec.path);
        continue;
      }
      throw new DstackError('DS0040', `artifact ${spec.path} could not be read from the job's container: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const r = await readTar(res, { ...o, path: spec.path, base: posix.basename(at) });
    entries.push(...r.entries);
    skipped.push(...r.skipped);
    newBytes += r.newBytes;
  }
  return { entries: makeManifest(entries).entries, missing, skipped, newBytes };
}

interface TarTarget extends SaveOutsideOptions {
  /** The artifact path as the manifest keeps it (`/opt/venv`, `~/.cache/x`). */
  readonly path: string;
  /** The tar's top name: the basename of the path in the container. */
  readonly base: string;
}

async function readTar(stream: Readable, t: TarTarget): Promise<{ entries: ManifestEntry[]; skipped: string[]; newBytes: number }> {
  const { Parser } = await import('tar');
  const byName = new Map<string, ManifestEntry>();
  const skipped: string[] = [];
  let newBytes = 0;
  let chain: Promise<void> = Promise.resolve();
  let failed: unknown;
  const parser = new Parser({ strict: true });
  // Entries are emitted one after another as the previous one is consumed; the chain keeps their
  // handling in order, and an entry not yet handled holds the stream back (backpressure).
  parser.on('entry', (entry: ReadEntry) => {
    chain = chain.then(async () => {
      if (failed !== undefined) return void entry.resume();
      try {
        const e = await toEntry(entry, t, byName, skipped);
        if (e) byName.set(e.path, e.entry);
        if (e?.created) newBytes += e.created;
      } catch (err) {
        failed ??= err;
        entry.resume();
      }
    });
  });
  await pipeline(stream, parser as unknown as NodeJS.WritableStream).catch((e: unknown) => {
    failed ??= e instanceof DstackError ? e : new DstackError('DS0041', `the archive of ${t.path} from the job's container is not a valid tar: ${e instanceof Error ? e.message : String(e)}`);
  });
  await chain;
  if (failed !== undefined) throw failed;
  return { entries: [...byName.values()], skipped, newBytes };
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

async function toEntry(
  entry: ReadEntry,
  t: TarTarget,
  byName: ReadonlyMap<string, ManifestEntry>,
  skipped: string[],
): Promise<{ path: string; entry: ManifestEntry; created?: number } | undefined> {
  const path = manifestPath(entry.path, t);
  const mode = (entry.mode ?? 0o644) & 0o777;
  switch (entry.type) {
    case 'Directory':
      entry.resume();
      return { path, entry: { type: 'dir', path, mode } };
    case 'SymbolicLink':
      entry.resume();
      if (!isValidOutsideTarget(entry.linkpath)) throw unsafe(t, entry.path, 'a symlink without a usable target');
      return { path, entry: { type: 'symlink', path, target: entry.linkpath! } };
    case 'Link': {
      entry.resume();
      const to = byName.get(manifestPath(entry.linkpath ?? '', t));
      if (to?.type !== 'file') {
        skipped.push(`${path} (a hard link to ${entry.linkpath ?? '?'}, not an earlier file)`);
        return undefined;
      }
      return { path, entry: { ...to, path } };
    }
    default:
      if (FILE_TYPES.has(entry.type)) {
        const put = await putEntry(entry, t);
        return { path, entry: { type: 'file', path, size: put.size, mode, hash: put.hash }, created: put.created ? put.size : 0 };
      }
      entry.resume();
      skipped.push(`${path} (${entry.type === 'FIFO' ? 'a fifo' : /Device/.test(entry.type) ? 'a device' : `a ${entry.type} entry`})`);
      return undefined;
  }
}

/** `venv/bin/python` of the tar of `/opt/venv` → `/opt/venv/bin/python`; DS0041 for any other name. */
function manifestPath(name: string, t: TarTarget): string {
  const n = name.replace(/\/+$/, '');
  const parts = n.split('/');
  if (parts[0] !== t.base || parts.some((p) => p === '..' || p === '.' || p === '') || n.includes('\0')) {
    throw unsafe(t, name, 'a name outside the path asked for');
  }
  return [t.path, ...parts.slice(1)].join('/');
}

const unsafe = (t: TarTarget, name: string, what: string): DstackError =>
  new DstackError('DS0041', `the archive of ${t.path} from the job's container holds ${what}: '${name.slice(0, 200)}'`, {
    hint: 'the entry was not saved; if the job made it on purpose, keep it under /workflow instead',
  });

/** The entry's bytes into a temp file, hashed as they pass; into the store unless it has them. */
async function putEntry(entry: ReadEntry, t: TarTarget): Promise<{ hash: ContentHash; size: number; created: boolean }> {
  const tmp = join(t.tmpDir, `outside-${process.pid}-${randomBytes(6).toString('hex')}`);
  const h = createHash('sha256');
  let size = 0;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    // Read by iteration, not a 'data' listener: the entry may hold bytes already, which a listener
    // would take before any pipe is attached.
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      h.update(chunk);
      size += chunk.length;
      await fh.write(chunk);
    }
    await fh.close();
    if (size !== entry.size) throw unsafe(t, entry.path, `a file of ${size} bytes where its header says ${entry.size}`);
    const hash = asContentHash(h.digest('hex'));
    if (await t.store.has(hash)) return { hash, size, created: false };
    const put = await t.store.putFile(tmp);
    if (put.hash !== hash) throw unsafe(t, entry.path, 'a file that changed while it was stored');
    return { hash, size, created: put.created };
  } finally {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
  }
}

export interface RestoreOutsideOptions {
  readonly client: DockerClient;
  /** The dependent's container: created, not started. */
  readonly container: string;
  /** The deps' outside entries, merged (mergeOutside). */
  readonly entries: readonly ManifestEntry[];
  /** What `~` is in this container. */
  readonly home: string;
  readonly store: ArtifactStore;
  readonly signal?: AbortSignal;
}

/** Writes the entries into the container's own layer at their paths, owned by its user. */
export async function restoreOutside(o: RestoreOutsideOptions): Promise<void> {
  if (o.entries.length === 0) return;
  validateManifest(makeManifest(o.entries), { outside: true });
  const { Header, Pax } = await import('tar');
  const tar = Readable.from(tarOf(o, Header, Pax), { objectMode: false });
  try {
    await o.client.call('PUT', `/containers/${o.container}/archive`, {
      query: { path: '/', copyUIDGID: true },
      headers: { 'Content-Type': 'application/x-tar' },
      upload: tar,
      signal: o.signal,
      timeoutMs: o.client.timeouts.archive,
      what: 'write the artifacts outside /workflow into the container',
    });
  } catch (e) {
    if (e instanceof DstackError) throw e;
    throw new DstackError('DS0042', `the deps' artifacts outside /workflow could not be written into the job's container: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** A fixed time for every entry: the same artifact makes the same tar. */
const MTIME = new Date('2000-01-01T00:00:00Z');
const BLOCK = 512;

async function* tarOf(o: RestoreOutsideOptions, Header: typeof import('tar').Header, Pax: typeof import('tar').Pax): AsyncGenerator<Buffer> {
  for (const e of o.entries) {
    const name = inContainer(e.path, o.home).slice(1) + (e.type === 'dir' ? '/' : '');
    const data = {
      path: name,
      mode: e.type === 'symlink' ? 0o777 : e.mode,
      uid: 0,
      gid: 0,
      size: e.type === 'file' ? e.size : 0,
      mtime: MTIME,
      type: e.type === 'file' ? ('File' as const) : e.type === 'dir' ? ('Directory' as const) : ('SymbolicLink' as const),
      ...(e.type === 'symlink' ? { linkpath: e.target } : {}),
    };
    const header = new Header(data);
    const block = Buffer.alloc(BLOCK);
    // Names over 100 bytes (deep site-packages) need a PAX header before the entry's own.
    if (header.encode(block, 0)) yield new Pax(data).encode();
    yield block;
    if (e.type !== 'file') continue;
    let sent = 0;
    // Verified as it streams: a damaged object errors the stream (DS0303/DS0304), never ends it clean.
    for await (const chunk of o.store.objects.get(e.hash, { size: e.size, ...(o.signal ? { signal: o.signal } : {}) })) {
      sent += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    if (sent !== e.size) throw new DstackError('DS0042', `the stored object of ${e.path} has ${sent} bytes where its manifest says ${e.size}`);
    const pad = (BLOCK - (e.size % BLOCK)) % BLOCK;
    if (pad) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(BLOCK * 2);
}
