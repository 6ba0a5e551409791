/**
 * Run records as the team bucket keeps them (`repos/<repo>/runs/<run>.json`): what teammates may see
 * of a run — no local paths, process ids, backend handles or registry passwords — with manifests
 * by hash (they live in `manifests/`), and the home that owns the record.
 *
 * Records are read from a place others write to, so they are checked before use: a record that does
 * not parse or lacks what dstack needs is DS0266 naming its key, never an internal error.
 */
import { DstackError } from '../engine/errors.js';
import type { JobRecord, RunRecord } from '../engine/store/types.js';
import { RUN_STATUSES, type ContentHash, type Fingerprint, type FingerprintParts, type JobSpec, type JobStatus } from '../engine/types.js';
import type { RunSummary } from './layout.js';

export interface TeamRepo {
  /** The repository's identity (repo-id.ts). */
  readonly id: string;
  readonly isGit: boolean;
  readonly branch?: string;
  readonly commit?: string;
  readonly diffHash?: string;
}

export interface TeamJob {
  readonly workflow: string;
  readonly index: number;
  readonly spec: JobSpec;
  /** Indexes of the jobs of the same run it waited for. */
  readonly deps: readonly number[];
  readonly status: JobStatus;
  readonly exitCode?: number;
  readonly reason?: string;
  /** The DstackError code a failed job ended with (what sets `dstack run`'s exit status). */
  readonly errorCode?: string;
  /** A reuse: the job whose artifacts it took, as `run/workflow`. */
  readonly cachedFrom?: string;
  /** The manifest object (in `manifests/`) of its artifacts. */
  readonly manifest?: ContentHash;
  readonly files?: number;
  readonly size?: number;
  readonly fingerprint?: Fingerprint;
  readonly fingerprintParts?: FingerprintParts;
  readonly submittedAt: number;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  readonly history: readonly { readonly status: JobStatus; readonly at: number }[];
  /** How many log parts (`logs/<run>/<index>-<part>.ndjson`) it has. */
  readonly logParts?: number;
}

export interface TeamRun {
  readonly version: 1;
  /** The id of the dstack home that owns this record: the only one that writes it. */
  readonly home: string;
  readonly name: string;
  readonly workflow: string;
  readonly owner: string;
  readonly backend: string;
  readonly repo: TeamRepo;
  readonly args: readonly string[];
  readonly tag?: string;
  readonly status: JobStatus;
  readonly submittedAt: number;
  readonly finishedAt?: number;
  readonly updatedAt: number;
  readonly jobs: readonly TeamJob[];
}

export const summaryOf = (r: TeamRun): RunSummary => ({
  name: r.name,
  updatedAt: r.updatedAt,
  workflow: r.workflow,
  owner: r.owner,
  backend: r.backend,
  status: r.status,
  submittedAt: r.submittedAt,
  ...(r.finishedAt !== undefined ? { finishedAt: r.finishedAt } : {}),
  ...(r.tag !== undefined ? { tag: r.tag } : {}),
});

/**
 * The job spec teammates see: without the registry password (a literal one would be a credential;
 * a `${{ secrets.X }}` one is only a name, but neither is theirs to use).
 */
export function shareableSpec(spec: JobSpec): JobSpec {
  if (!spec.registryAuth) return spec;
  const { registryAuth: _dropped, ...rest } = spec;
  return rest;
}

/** A local run as the bucket keeps it; `manifests` gives each job's manifest object (absent: none). */
export function teamRunOf(options: {
  readonly run: RunRecord;
  readonly jobs: readonly JobRecord[];
  readonly name: string;
  readonly home: string;
  readonly repo: string;
  readonly manifests: ReadonlyMap<number, ContentHash>;
  readonly logParts: ReadonlyMap<number, number>;
  readonly now: number;
}): TeamRun {
  const { run, jobs } = options;
  const indexOf = new Map(jobs.map((j) => [j.id as string, j.index] as const));
  return {
    version: 1,
    home: options.home,
    name: options.name,
    workflow: run.workflow,
    owner: run.owner,
    backend: run.backend,
    repo: {
      id: options.repo,
      isGit: run.repo.isGit,
      ...(run.repo.branch !== undefined ? { branch: run.repo.branch } : {}),
      ...(run.repo.commit !== undefined ? { commit: run.repo.commit } : {}),
      ...(run.repo.diffHash !== undefined ? { diffHash: run.repo.diffHash } : {}),
    },
    args: run.args,
    ...(run.tag !== undefined ? { tag: run.tag } : {}),
    status: run.status,
    submittedAt: run.submittedAt,
    ...(run.finishedAt !== undefined ? { finishedAt: run.finishedAt } : {}),
    updatedAt: options.now,
    jobs: jobs.map((j): TeamJob => {
      const manifest = options.manifests.get(j.index);
      const files = j.manifest?.entries.filter((e) => e.type === 'file').length;
      const parts = j.fingerprintParts && shareableParts(j.fingerprintParts);
      const { cachedFrom } = j;
      return {
        workflow: j.workflow,
        index: j.index,
        spec: shareableSpec(j.spec),
        deps: j.deps.map((d) => indexOf.get(d)).filter((i): i is number => i !== undefined),
        status: j.status,
        ...(j.exitCode !== undefined ? { exitCode: j.exitCode } : {}),
        ...(j.reason !== undefined ? { reason: j.reason } : {}),
        ...(j.errorCode !== undefined ? { errorCode: j.errorCode } : {}),
        ...(cachedFrom ? { cachedFrom } : {}),
        ...(manifest ? { manifest, files: files ?? 0, size: j.manifest?.size ?? 0 } : {}),
        ...(j.fingerprint ? { fingerprint: j.fingerprint } : {}),
        ...(parts ? { fingerprintParts: parts } : {}),
        submittedAt: j.submittedAt,
        ...(j.startedAt !== undefined ? { startedAt: j.startedAt } : {}),
        ...(j.finishedAt !== undefined ? { finishedAt: j.finishedAt } : {}),
        history: j.history,
        ...(options.logParts.get(j.index) ? { logParts: options.logParts.get(j.index)! } : {}),
      };
    }),
  };
}

/** The input listing is an object of the local store only: its hash would point at nothing here. */
function shareableParts(p: FingerprintParts): FingerprintParts {
  const { inputsListing: _local, ...rest } = p;
  return rest;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStatus = (v: unknown): v is JobStatus => typeof v === 'string' && (RUN_STATUSES as readonly string[]).includes(v);

/** Parses a run record read from `key`; DS0266 when it is not one. */
export function parseTeamRun(body: Buffer, key: string, where: string): TeamRun {
  const damaged = (why: string): DstackError =>
    new DstackError('DS0266', `the run record ${where}/${key} is damaged (${why})`, {
      hint: 'push the run again from the home that made it (`dstack push RUN`) to rewrite it',
    });
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw damaged(`not JSON: ${(e as Error).message}`);
  }
  if (!isObj(raw) || raw.version !== 1) throw damaged('not a version 1 run record');
  for (const f of ['home', 'name', 'workflow', 'owner', 'backend'] as const) if (typeof raw[f] !== 'string') throw damaged(`no ${f}`);
  if (!isStatus(raw.status) || !isNum(raw.submittedAt) || !isNum(raw.updatedAt)) throw damaged('no status or times');
  if (!isObj(raw.repo) || typeof raw.repo.id !== 'string' || !Array.isArray(raw.args) || !Array.isArray(raw.jobs)) throw damaged('no repo, args or jobs');
  raw.jobs.forEach((j: unknown, i: number) => {
    if (!isObj(j) || typeof j.workflow !== 'string' || j.index !== i || !isObj(j.spec) || !isStatus(j.status) || !Array.isArray(j.deps) || !Array.isArray(j.history) || !isNum(j.submittedAt)) {
      throw damaged(`job ${i} is incomplete`);
    }
    if (j.manifest !== undefined && (typeof j.manifest !== 'string' || !/^[0-9a-f]{64}$/.test(j.manifest))) throw damaged(`job ${i} has a bad manifest hash`);
    if (!j.deps.every((d: unknown) => Number.isInteger(d) && (d as number) >= 0 && (d as number) < i)) throw damaged(`job ${i} has bad deps`);
  });
  return raw as unknown as TeamRun;
}
