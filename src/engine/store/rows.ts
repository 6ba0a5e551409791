/**
 * Rows as SQLite returns them, and their decoding into records. JSON columns are parsed
 * defensively (see Connection.json): a damaged value is a coded error naming the record.
 */
import type { Manifest } from '../objects.js';
import type { BackendHandle } from '../backend.js';
import { Codes, type ErrorCode } from '../errors.js';
import type { FingerprintParts, JobSpec, JobStatus, RepoInfo } from '../types.js';
import { asContentHash, asJobId, asRunName, RUN_STATUSES } from '../types.js';
import type { Connection } from './connection.js';
import type { JobPort, JobRecord, RunRecord, TagRecord } from './records.js';

export interface RunRow {
  name: string;
  workflow: string;
  owner: string;
  backend: string;
  repo: string;
  args: string;
  tag: string | null;
  status: string;
  submitted_at: number;
  finished_at: number | null;
  pid: number | null;
  hostname: string | null;
  snapshot: string | null;
}

export interface JobRow {
  id: string;
  run: string;
  idx: number;
  workflow: string;
  spec: string;
  deps: string;
  status: string;
  exit_code: number | null;
  reason: string | null;
  error_code: string | null;
  cached_from: string | null;
  handle: string | null;
  ports: string | null;
  manifest: string | null;
  fingerprint: string | null;
  fingerprint_parts: string | null;
  submitted_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export interface TagRow {
  name: string;
  run: string | null;
  manifest: string;
  created_at: number;
}

export interface HistoryRow {
  job: string;
  status: string;
  at: number;
}

export const RUN_COLUMNS = 'name, workflow, owner, backend, repo, args, tag, status, submitted_at, finished_at, pid, hostname, snapshot';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isManifest = (v: unknown): boolean => isObject(v) && Array.isArray(v.entries) && typeof v.size === 'number';
const isStringArray = (v: unknown): boolean => Array.isArray(v) && v.every((x) => typeof x === 'string');
const STATUSES: ReadonlySet<string> = new Set(RUN_STATUSES);

/** A status column holding something that is not a status is damage too. */
function status(c: Connection, value: string, what: string): JobStatus {
  if (!STATUSES.has(value)) throw c.damaged(`${what} status`);
  return value as JobStatus;
}

export const decodeManifest = (c: Connection, text: string, what: string): Manifest => c.json<Manifest>(text, what, isManifest);

/** The columns a run's insert fills from what it was submitted with: a new run's and an imported run's alike. */
export function runInsertParams(r: Pick<RunRecord, 'name' | 'workflow' | 'owner' | 'backend' | 'repo' | 'args' | 'tag'>) {
  return {
    name: r.name,
    workflow: r.workflow,
    owner: r.owner,
    backend: r.backend,
    repo: JSON.stringify(r.repo),
    repoRoot: r.repo.root,
    args: JSON.stringify(r.args),
    tag: r.tag ?? null,
  };
}

export function toRun(c: Connection, r: RunRow): RunRecord {
  const what = `run ${r.name}`;
  return {
    name: asRunName(r.name),
    workflow: r.workflow,
    owner: r.owner,
    backend: r.backend,
    repo: c.json<RepoInfo>(r.repo, `${what} repo`, (v) => isObject(v) && typeof v.root === 'string'),
    args: c.json<string[]>(r.args, `${what} args`, isStringArray),
    ...(r.tag !== null && { tag: r.tag }),
    status: status(c, r.status, what),
    submittedAt: r.submitted_at,
    ...(r.finished_at !== null && { finishedAt: r.finished_at }),
    ...(r.pid !== null && { pid: r.pid }),
    ...(r.hostname !== null && { hostname: r.hostname }),
    ...(r.snapshot !== null && { snapshot: asContentHash(r.snapshot) }),
  };
}

export function toTag(c: Connection, r: TagRow): TagRecord {
  return {
    name: r.name,
    ...(r.run !== null && { run: asRunName(r.run) }),
    manifest: decodeManifest(c, r.manifest, `tag ${r.name} manifest`),
    createdAt: r.created_at,
  };
}

const isPortList = (v: unknown): boolean => Array.isArray(v) && v.every((p) => isObject(p) && typeof p.port === 'number' && typeof p.url === 'string');

export const isFingerprintParts = (v: unknown): boolean => isObject(v) && typeof v.version === 'number' && isObject(v.parts);

export function toJob(c: Connection, r: JobRow, history: JobRecord['history']): JobRecord {
  const what = `job ${r.id}`;
  const errorCode = r.error_code !== null && Object.hasOwn(Codes, r.error_code) ? (r.error_code as ErrorCode) : undefined;
  return {
    id: asJobId(r.id),
    run: asRunName(r.run),
    workflow: r.workflow,
    index: r.idx,
    spec: c.json<JobSpec>(r.spec, `${what} spec`, (v) => isObject(v) && typeof v.workflow === 'string' && isObject(v.env)),
    deps: c.json<string[]>(r.deps, `${what} deps`, isStringArray).map(asJobId),
    status: status(c, r.status, what),
    ...(r.exit_code !== null && { exitCode: r.exit_code }),
    ...(r.reason !== null && { reason: r.reason }),
    ...(errorCode !== undefined && { errorCode }),
    ...(r.cached_from !== null && { cachedFrom: asJobId(r.cached_from) }),
    ...(r.handle !== null && { handle: c.json<BackendHandle>(r.handle, `${what} handle`, isObject) }),
    ...(r.ports !== null && { ports: c.json<JobPort[]>(r.ports, `${what} ports`, isPortList) }),
    ...(r.manifest !== null && { manifest: decodeManifest(c, r.manifest, `${what} manifest`) }),
    ...(r.fingerprint !== null && { fingerprint: r.fingerprint as JobRecord['fingerprint'] }),
    ...(r.fingerprint_parts !== null && {
      fingerprintParts: c.json<FingerprintParts>(r.fingerprint_parts, `${what} fingerprint`, isFingerprintParts),
    }),
    submittedAt: r.submitted_at,
    ...(r.started_at !== null && { startedAt: r.started_at }),
    ...(r.finished_at !== null && { finishedAt: r.finished_at }),
    history,
  };
}
