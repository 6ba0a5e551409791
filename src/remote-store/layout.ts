/**
 * Where things are in the team bucket (S3 and a shared folder alike):
 *
 *   objects/sha256/ab/<hash>                  file contents, by sha256 (the local store's names)
 *   manifests/sha256/ab/<hash>                artifact manifests (JSON), by sha256
 *   quarantine/<hash>-<time>-<rand>           damaged objects moved aside, never served
 *   repos/<repo>/runs/<run>.json              a run and its jobs (manifests by hash)
 *   repos/<repo>/index/<run>~<seq>~<fields>   one entry per run for `ps --remote`: a listing is enough
 *   repos/<repo>/cache/<fingerprint>/<time>~<run>~<job>~<owner>~<manifest>
 *                                             one entry per successful job: a listing finds a hit
 *   repos/<repo>/tags/<name>.json             a tag (create-only: the first writer owns the name)
 *   repos/<repo>/logs/<run>/<job>-<part>.ndjson   a job's log, in parts
 *
 * `<repo>` is the repository's identity (repo-id.ts), URI-encoded into one segment. Nothing is ever
 * read, changed and written back by two writers: a name that must be unique is written create-only
 * (the run record by its first pusher, a tag by its creator, an object by whoever comes first), an
 * index holds one object per entry, and the only overwritten object (a run record, while a remote
 * run goes on) has one writer, the home that owns the run.
 *
 * Index and cache entries carry what a listing needs in their names, so `ps --remote` over 1,000
 * runs is one or two listings, and a cache lookup one — not a read per run. A name is kept under 200
 * bytes (a shared folder's file names are limited to 255); an index entry whose fields do not fit
 * says so (`*`) and its run record is read instead.
 */
import type { ContentHash, Fingerprint, JobStatus } from '../engine/types.js';
import { RUN_STATUSES } from '../engine/types.js';

export const OBJECTS = 'objects/sha256/';
export const MANIFESTS = 'manifests/sha256/';
export const REPOS = 'repos/';

export const repoPrefix = (repo: string): string => `${REPOS}${encodeURIComponent(repo)}/`;
export const repoOfPrefix = (prefix: string): string => decodeURIComponent(prefix.slice(REPOS.length).replace(/\/$/, ''));

export const runKey = (repo: string, run: string): string => `${repoPrefix(repo)}runs/${run}.json`;
export const indexPrefix = (repo: string): string => `${repoPrefix(repo)}index/`;
export const cachePrefix = (repo: string, fingerprint: Fingerprint): string => `${repoPrefix(repo)}cache/${fingerprint}/`;
export const tagsPrefix = (repo: string): string => `${repoPrefix(repo)}tags/`;
export const tagKey = (repo: string, name: string): string => `${tagsPrefix(repo)}${name}.json`;
export const logsPrefix = (repo: string, run: string): string => `${repoPrefix(repo)}logs/${run}/`;
export const logKey = (repo: string, run: string, job: number, part: number): string =>
  `${logsPrefix(repo, run)}${String(job).padStart(4, '0')}-${String(part).padStart(6, '0')}.ndjson`;

/** Longest entry name kept whole (a shared folder allows 255 bytes per file name). */
const MAX_NAME = 200;

/** A field of an entry name: URI-encoded, `~` (the separator) and `*` escaped too. */
const enc = (s: string): string => encodeURIComponent(s).replace(/~/g, '%7E').replace(/\*/g, '%2A');
const dec = (s: string): string => decodeURIComponent(s);
/** Times in entry names: base 36, fixed width, so names sort by time. */
const time36 = (ms: number): string => Math.max(0, Math.floor(ms)).toString(36).padStart(9, '0');
const fromTime36 = (s: string): number | undefined => (/^[0-9a-z]{1,12}$/.test(s) ? parseInt(s, 36) : undefined);

/** What `ps --remote` shows of a run. */
export interface RunSummary {
  readonly name: string;
  /** When the record was last written: of two entries for one run, the later wins. */
  readonly updatedAt: number;
  readonly workflow: string;
  readonly owner: string;
  readonly backend: string;
  readonly status: JobStatus;
  readonly submittedAt: number;
  readonly finishedAt?: number;
  readonly tag?: string;
}

/** An index entry as it appears in a listing: the whole summary, or `partial` (read the record). */
export type IndexEntry = { readonly key: string; readonly name: string; readonly updatedAt: number } & (
  | { readonly summary: RunSummary }
  | { readonly summary?: undefined }
);

export function indexKey(repo: string, s: RunSummary): string {
  const head = `${s.name}~${time36(s.updatedAt)}`;
  const full = [head, s.status, time36(s.submittedAt), s.finishedAt === undefined ? '' : time36(s.finishedAt), enc(s.owner), enc(s.backend), enc(s.workflow), enc(s.tag ?? '')].join('~');
  return `${indexPrefix(repo)}${full.length <= MAX_NAME ? full : `${head}~*`}`;
}

export function parseIndexKey(repo: string, key: string): IndexEntry | undefined {
  const name = key.slice(indexPrefix(repo).length);
  const f = name.split('~');
  const updatedAt = fromTime36(f[1] ?? '');
  if (!f[0] || updatedAt === undefined) return undefined;
  if (f[2] === '*' && f.length === 3) return { key, name: f[0], updatedAt };
  if (f.length !== 9) return undefined;
  const status = f[2] as JobStatus;
  const submittedAt = fromTime36(f[3]!);
  const finishedAt = f[4] === '' ? undefined : fromTime36(f[4]!);
  if (!RUN_STATUSES.includes(status) || submittedAt === undefined || (f[4] !== '' && finishedAt === undefined)) return undefined;
  try {
    const summary: RunSummary = {
      name: f[0],
      updatedAt,
      status,
      submittedAt,
      ...(finishedAt !== undefined ? { finishedAt } : {}),
      owner: dec(f[5]!),
      backend: dec(f[6]!),
      workflow: dec(f[7]!),
      ...(f[8] ? { tag: dec(f[8]) } : {}),
    };
    return { key, name: f[0], updatedAt, summary };
  } catch {
    return undefined; // a name that is not ours (bad escapes): not an entry
  }
}

/** A successful job in the fingerprint index. */
export interface CacheEntry {
  readonly fingerprint: Fingerprint;
  readonly finishedAt: number;
  readonly run: string;
  /** The job's index in its run. */
  readonly job: number;
  readonly owner: string;
  readonly manifest: ContentHash;
}

export function cacheKey(repo: string, e: CacheEntry): string {
  // An owner name long enough to overflow the entry is cut (by whole characters): it is only shown.
  let owner = '';
  for (const ch of e.owner) {
    if (owner.length + enc(ch).length > 40) break;
    owner += enc(ch);
  }
  return `${cachePrefix(repo, e.fingerprint)}${time36(e.finishedAt)}~${e.run}~${e.job}~${owner}~${e.manifest}`;
}

export function parseCacheKey(repo: string, fingerprint: Fingerprint, key: string): CacheEntry | undefined {
  const f = key.slice(cachePrefix(repo, fingerprint).length).split('~');
  if (f.length !== 5) return undefined;
  const finishedAt = fromTime36(f[0]!);
  const job = Number(f[2]);
  if (finishedAt === undefined || !f[1] || !Number.isInteger(job) || job < 0 || !/^[0-9a-f]{64}$/.test(f[4]!)) return undefined;
  try {
    return { fingerprint, finishedAt, run: f[1], job, owner: dec(f[3]!), manifest: f[4] as ContentHash };
  } catch {
    return undefined;
  }
}
