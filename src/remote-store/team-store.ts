/**
 * The remote run store: a team's runs, cache index, tags and logs in a bucket (layout.ts), beside
 * its objects. The same focused shapes as the local store (src/engine/store/types.ts) where they
 * make sense — reading runs and jobs, finding a cache hit, reading and creating tags, reading logs —
 * but asynchronous, since every answer is a request away. The local-only ones (the stat cache,
 * prune's queries) have no counterpart here.
 */
import { createHash } from 'node:crypto';
import { validateManifest } from '../artifacts/manifest.js';
import { DstackError } from '../engine/errors.js';
import { forEachLimit } from '../engine/limit.js';
import type { Manifest } from '../engine/objects.js';
import { asContentHash, type ContentHash, type Fingerprint } from '../engine/types.js';
import type { Bucket } from './bucket.js';
import { BucketObjectStore } from './bucket-objects.js';
import { cacheKey, cachePrefix, indexKey, indexPrefix, MANIFESTS, parseCacheKey, parseIndexKey, repoOfPrefix, REPOS, runKey, type CacheEntry, type RunSummary } from './layout.js';
import { parseTeamRun, summaryOf, type TeamRun } from './records.js';

/** Run records read at once when an index entry could not carry its fields. */
const READS_IN_FLIGHT = 16;

export type PutRunResult =
  | { readonly outcome: 'created' | 'updated' | 'unchanged' }
  /** The name is another home's run: the record was not written. */
  | { readonly outcome: 'taken'; readonly by: TeamRun };

export class TeamStore {
  readonly objects: BucketObjectStore;
  readonly manifests: BucketObjectStore;

  constructor(
    readonly bucket: Bucket,
    /** The remote's name in config.json (`team`), for messages. */
    readonly remote: string,
  ) {
    this.objects = new BucketObjectStore(bucket);
    this.manifests = new BucketObjectStore(bucket, { prefix: MANIFESTS });
  }

  get where(): string {
    return this.bucket.where;
  }

  // Manifests

  /**
   * Stores a manifest by the hash of its JSON, create-only. One of the right size already there is
   * not sent again (a manifest of 10,000 files is a megabyte or two): pushing again costs a HEAD.
   */
  async putManifest(manifest: Manifest): Promise<ContentHash> {
    const body = Buffer.from(JSON.stringify(manifest));
    const hash = asContentHash(createHash('sha256').update(body).digest('hex'));
    if ((await this.bucket.head(this.manifests.key(hash))) !== body.length) await this.manifests.putVerified(hash, body);
    return hash;
  }

  /** A manifest, verified against its hash and checked as a manifest (DS0265/DS0266 otherwise). */
  async getManifest(hash: ContentHash): Promise<Manifest> {
    const chunks: Buffer[] = [];
    for await (const c of this.manifests.get(hash)) chunks.push(c as Buffer);
    try {
      const m = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Manifest;
      validateManifest(m);
      return m;
    } catch (e) {
      throw new DstackError('DS0266', `the manifest ${hash} in ${this.where} is not a valid manifest (${(e as Error).message})`, {
        hint: 'push the run that made it again from the home that has it',
      });
    }
  }

  // Runs

  async getRun(repo: string, name: string, signal?: AbortSignal): Promise<TeamRun | undefined> {
    const key = runKey(repo, name);
    const body = await this.bucket.read(key, signal);
    return body && parseTeamRun(body, key, this.where);
  }

  /**
   * Writes a run record. The first write of a name is create-only, so two homes that picked the same
   * run name cannot overwrite each other (`taken`: push under another name); the owning home may
   * rewrite its own record later (a remote run's status, a run pushed again after a tag).
   */
  async putRun(run: TeamRun, signal?: AbortSignal): Promise<PutRunResult> {
    const key = runKey(run.repo.id, run.name);
    const body = Buffer.from(JSON.stringify(run));
    const opts = signal ? { signal } : {};
    if (await this.bucket.write(key, body, { createOnly: true, ...opts })) return { outcome: 'created' };
    const there = await this.getRun(run.repo.id, run.name, signal).catch((e: unknown) => {
      if (e instanceof DstackError && e.code === 'DS0266') return undefined; // a damaged record of ours is rewritten
      throw e;
    });
    if (there && there.home !== run.home) return { outcome: 'taken', by: there };
    if (there && sameRecord(there, run)) return { outcome: 'unchanged' };
    await this.bucket.write(key, body, opts);
    return { outcome: 'updated' };
  }

  /**
   * Adds the run's index entry and removes its older ones. A reader that lists in between sees two
   * entries for the run and keeps the newer one.
   */
  async indexRun(run: TeamRun, signal?: AbortSignal): Promise<void> {
    const repo = run.repo.id;
    const key = indexKey(repo, summaryOf(run));
    await this.bucket.write(key, Buffer.alloc(0), { createOnly: true, ...(signal ? { signal } : {}) });
    for await (const e of this.bucket.list(`${indexPrefix(repo)}${run.name}~`, signal ? { signal } : {})) {
      const entry = parseIndexKey(repo, e.key);
      if (entry && entry.name === run.name && e.key !== key && entry.updatedAt <= run.updatedAt) await this.bucket.remove(e.key, signal);
    }
  }

  /** The team's runs of a repository, newest first: one listing of the index (plus a read per entry too long to carry its fields). */
  async listRuns(repo: string, signal?: AbortSignal): Promise<RunSummary[]> {
    const latest = new Map<string, ReturnType<typeof parseIndexKey> & object>();
    for await (const e of this.bucket.list(indexPrefix(repo), signal ? { signal } : {})) {
      const entry = parseIndexKey(repo, e.key);
      if (!entry) continue;
      const seen = latest.get(entry.name);
      if (!seen || seen.updatedAt < entry.updatedAt) latest.set(entry.name, entry);
    }
    const out: RunSummary[] = [];
    const partial: string[] = [];
    for (const e of latest.values()) {
      if (e.summary) out.push(e.summary);
      else partial.push(e.name);
    }
    await forEachLimit(partial, READS_IN_FLIGHT, async (name) => {
      const run = await this.getRun(repo, name, signal);
      if (run) out.push(summaryOf(run));
    });
    return out.sort((a, b) => b.submittedAt - a.submittedAt || (a.name < b.name ? 1 : -1));
  }

  // The fingerprint index

  /** Adds a cache entry for every job of `run` that is done with a fingerprint and artifacts. */
  async indexCache(run: TeamRun, signal?: AbortSignal): Promise<void> {
    const entries: CacheEntry[] = [];
    for (const j of run.jobs) {
      if (j.status !== 'done' || !j.fingerprint || !j.manifest) continue;
      entries.push({ fingerprint: j.fingerprint, finishedAt: j.finishedAt ?? run.updatedAt, run: run.name, job: j.index, owner: run.owner, manifest: j.manifest });
    }
    await forEachLimit(entries, READS_IN_FLIGHT, async (e) => {
      await this.bucket.write(cacheKey(run.repo.id, e), Buffer.alloc(0), { createOnly: true, ...(signal ? { signal } : {}) });
    });
  }

  /** The newest successful job with this fingerprint in the repository: one listing. */
  async findCacheHit(repo: string, fingerprint: Fingerprint, signal?: AbortSignal): Promise<CacheEntry | undefined> {
    let newest: CacheEntry | undefined;
    for await (const e of this.bucket.list(cachePrefix(repo, fingerprint), signal ? { signal } : {})) {
      const entry = parseCacheKey(repo, fingerprint, e.key);
      if (entry && (!newest || entry.finishedAt >= newest.finishedAt)) newest = entry;
    }
    return newest;
  }

  // Repositories

  /** Every repository the bucket has records of. */
  async repos(signal?: AbortSignal): Promise<string[]> {
    return (await this.bucket.listFolders(REPOS, signal)).map(repoOfPrefix);
  }
}

/** Two records of the same run say the same, whenever each was written. */
function sameRecord(a: TeamRun, b: TeamRun): boolean {
  return JSON.stringify({ ...a, updatedAt: 0 }) === JSON.stringify({ ...b, updatedAt: 0 });
}
