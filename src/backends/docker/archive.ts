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
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadEntry } from 'tar';
import { inContainer, isValidOutsideTarget } from '../../artifacts/outside.js';
import { makeManifest, validateManifest } from '../../artifacts/manifest.js';
import type { ArtifactStore, ManifestEntry } from '../../artifacts/types.js';
import { DstackError } from '../../engine/errors.js';
import { asContentHash, type ArtifactSpec, type ContentHash } from '../../engine/types.js';
import { formatLimit } from './artifact-limit.js';
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
  /** Bytes of files one artifact may hold (DSTACK_ARTIFACT_LIMIT). */
  readonly limit: number;
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
    const r = await readArchive(res, { store: o.store, path: spec.path, base: posix.basename(at), limit: o.limit });
    entries.push(...r.entries);
    skipped.push(...r.skipped);
    newBytes += r.newBytes;
  }
  return { entries: makeManifest(entries).entries, missing, skipped, newBytes };
}

export interface TarTarget {
  readonly store: ArtifactStore;
  /** The artifact path as the manifest keeps it (`/opt/venv`, `~/.cache/x`). */
  readonly path: string;
  /** The tar's top name: the basename of the path in the container. */
  readonly base: string;
  /** Bytes of files the artifact may hold (DSTACK_ARTIFACT_LIMIT). */
  readonly limit: number;
}

/** One artifact's tar (the engine's answer to GET archive) into the store, checked entry by entry. */
export async function readArchive(stream: Readable, t: TarTarget): Promise<{ entries: ManifestEntry[]; skipped: string[]; newBytes: number }> {
  // Until the pipeline below owns it, an error of the engine's answer would be unhandled (a crash);
  // the stream keeps the error, and the pipeline rejects with it.
  const early = (): void => undefined;
  stream.once('error', early);
  const { Parser } = await import('tar');
  const seen: Seen = { byName: new Map(), links: new Set(), skipped: [], bytes: 0 };
  let newBytes = 0;
  let chain: Promise<void> = Promise.resolve();
  let failed: unknown;
  // The first refusal stops the read: the rest of a hostile archive (tens of GB of /dev/zero) is never drained.
  const stop = new AbortController();
  const parser = new Parser({ strict: true });
  // Entries are emitted one after another as the previous one is consumed; the chain keeps their
  // handling in order, and an entry not yet handled holds the stream back (backpressure).
  parser.on('entry', (entry: ReadEntry) => {
    chain = chain.then(async () => {
      if (failed !== undefined) return void entry.resume();
      try {
        const e = await toEntry(entry, t, seen);
        if (e) seen.byName.set(e.path, e.entry);
        if (e?.created) newBytes += e.created;
      } catch (err) {
        failed ??= err;
        entry.resume();
        stop.abort();
      }
    });
  });
  stream.off('error', early);
  await pipeline(stream, parser as unknown as NodeJS.WritableStream, { signal: stop.signal }).catch((e: unknown) => {
    failed ??= e instanceof DstackError ? e : new DstackError('DS0041', `the archive of ${t.path} from the job's container is not a valid tar: ${e instanceof Error ? e.message : String(e)}`);
  });
  await chain;
  if (failed !== undefined) throw failed;
  return { entries: [...seen.byName.values()], skipped: seen.skipped, newBytes };
}

/** What one archive has held so far. */
interface Seen {
  readonly byName: Map<string, ManifestEntry>;
  /** Paths of its symlinks: nothing may come under one (`link -> /etc`, then `link/passwd`). */
  readonly links: Set<string>;
  readonly skipped: string[];
  /** File bytes so far, against the limit. */
  bytes: number;
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

async function toEntry(entry: ReadEntry, t: TarTarget, seen: Seen): Promise<{ path: string; entry: ManifestEntry; created?: number } | undefined> {
  const path = manifestPath(entry.path, t);
  // An engine's archive names each path once; a second one would replace a folder whose files were already taken.
  if (seen.byName.has(path)) throw unsafe(t, entry.path, 'a name given twice');
  const under = [...seen.links].find((l) => path.startsWith(`${l}/`));
  if (under !== undefined) throw unsafe(t, entry.path, `an entry under its own symlink ${under}`);
  const mode = (entry.mode ?? 0o644) & 0o777;
  switch (entry.type) {
    case 'Directory':
      entry.resume();
      return { path, entry: { type: 'dir', path, mode } };
    case 'SymbolicLink':
      entry.resume();
      if (!isValidOutsideTarget(entry.linkpath)) throw unsafe(t, entry.path, 'a symlink without a usable target');
      seen.links.add(path);
      return { path, entry: { type: 'symlink', path, target: entry.linkpath! } };
    case 'Link': {
      entry.resume();
      // An engine writes a hard link's first name as the file and later names as links to it.
      const to = seen.byName.get(manifestPath(entry.linkpath ?? '', t));
      if (to?.type !== 'file' && to?.type !== 'symlink') throw unsafe(t, entry.path, `a hard link to ${entry.linkpath ? `'${entry.linkpath.slice(0, 200)}'` : 'nothing'}, not to a file before it`);
      if (to.type === 'symlink') seen.links.add(path);
      return { path, entry: { ...to, path } };
    }
    default:
      if (FILE_TYPES.has(entry.type)) {
        // Refused on its header, before its bytes are read: a job that wrote /dev/zero into it never fills this disk.
        if (entry.size > t.limit - seen.bytes) throw tooBig(t);
        seen.bytes += entry.size;
        const put = await putEntry(entry, t);
        return { path, entry: { type: 'file', path, size: put.size, mode, hash: put.hash }, created: put.created ? put.size : 0 };
      }
      entry.resume();
      seen.skipped.push(`${path} (${entry.type === 'FIFO' ? 'a fifo' : /Device/.test(entry.type) ? 'a device' : `a ${entry.type} entry`})`);
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

const tooBig = (t: TarTarget): DstackError =>
  new DstackError('DS0045', `artifact ${t.path} holds more than ${formatLimit(t.limit)} (DSTACK_ARTIFACT_LIMIT): it was not saved`, {
    hint: `make the job keep less under ${t.path}, or raise the limit: DSTACK_ARTIFACT_LIMIT=100GiB dstack run …`,
  });

/**
 * Most files of an environment are small: read whole, hashed, and written only when the store lacks
 * them (saving an unchanged environment again writes nothing). Larger ones stream straight into the
 * store, hashed as they are written, once.
 */
const IN_MEMORY = 1024 * 1024;

/** The entry's bytes into the store, hashed once as they pass; DS0041 when fewer than its header says. */
async function putEntry(entry: ReadEntry, t: TarTarget): Promise<{ hash: ContentHash; size: number; created: boolean }> {
  // Read by iteration, not a 'data' listener: the entry may hold bytes already, which a listener
  // would take before any pipe is attached.
  const bytes = entry as AsyncIterable<Buffer>;
  let put: { hash: ContentHash; size: number; created: boolean };
  if (entry.size <= IN_MEMORY) {
    const chunks: Buffer[] = [];
    for await (const chunk of bytes) chunks.push(chunk);
    const whole = Buffer.concat(chunks);
    const hash = asContentHash(createHash('sha256').update(whole).digest('hex'));
    put = (await t.store.has(hash)) ? { hash, size: whole.length, created: false } : await t.store.putStream([whole]);
  } else {
    put = await t.store.putStream(bytes);
  }
  if (put.size !== entry.size) throw unsafe(t, entry.path, `a file of ${put.size} bytes where its header says ${entry.size}`);
  return put;
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
