/**
 * The data the engine passes around: workflows as written, jobs as resolved, runs and statuses.
 * Plain readonly data, no behaviour; everything here can be stored and sent as JSON.
 */
import type { ErrorCode, SourceLocation } from './errors.js';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** `wet-mangust-1`: unique in a dstack home. */
export type RunName = Brand<string, 'RunName'>;
/** `<run>/<workflow>` style id of a job, unique in a dstack home. */
export type JobId = Brand<string, 'JobId'>;
/** Lower-case hex sha256 of a file's content. */
export type ContentHash = Brand<string, 'ContentHash'>;
/** Lower-case hex sha256 over a job's resolved spec and inputs (issue 3). */
export type Fingerprint = Brand<string, 'Fingerprint'>;

export const asRunName = (s: string): RunName => s as RunName;
export const asJobId = (s: string): JobId => s as JobId;
export const asContentHash = (s: string): ContentHash => s as ContentHash;

/**
 * What a fingerprint was made of, kept so `--explain` can say which input changed. Each part is a
 * hash (or a short value) under a stable name: `image`, `command`, `env.NAME`, `var.NAME`, `args`,
 * `working_dir`, `resources`, `artifacts`, `inputs`, `dep.WORKFLOW`, `tag.NAME`. The fingerprint is a
 * sha256 over `version` and the sorted parts.
 */
export interface FingerprintParts {
  readonly version: number;
  readonly parts: Readonly<Record<string, string>>;
  /** Human-readable values for messages where they are short and not secret (variables, image name). */
  readonly values?: Readonly<Record<string, string>>;
  /** The object holding the inputs listing (path → hash), to name the files that changed. */
  readonly inputsListing?: ContentHash;
}

/** Bytes. */
export type Bytes = number;

export interface GpuSpec {
  readonly count: number;
  readonly name?: string;
  readonly memory?: Bytes;
}

export interface Resources {
  readonly cpu?: number;
  readonly memory?: Bytes;
  readonly gpu?: GpuSpec;
  readonly shmSize?: Bytes;
  readonly interruptible?: boolean;
}

export type DepSpec =
  | { readonly kind: 'workflow'; readonly name: string; readonly location: SourceLocation }
  | { readonly kind: 'tag'; readonly name: string; readonly location: SourceLocation };

export interface ArtifactSpec {
  /**
   * Normalised. Relative to the working dir root (`/workflow`), no leading `./`, never escaping —
   * unless `absolute`: then an absolute path in the container (`/opt/conda/envs/myenv`) or one
   * under the container user's home (`~/.cache/x`), as dstack 0.7 allowed for environments.
   */
  readonly path: string;
  readonly mount: boolean;
  /** Present (and true) only for a path outside `/workflow`; see `path`. */
  readonly absolute?: true;
}

/**
 * Where a workflow asks to run (`resources.local: true` / `resources.remote: true` in dstack 0.7);
 * see `choosePlacement` in placement.ts for how it meets the command line.
 */
export type Placement = 'local' | 'remote';

export type Provider = 'bash' | 'docker';

/**
 * A workflow as loaded from the files: strings are still templates (`${{ … }}` unresolved).
 * `fieldLocations` maps a field path (`commands.0`, `env.FOO`, `image`) to where it was written,
 * so a later error (an unknown variable, an escaping path) can point at the right line.
 */
export interface WorkflowSpec {
  readonly name: string;
  readonly help?: string;
  readonly provider: Provider;
  readonly image?: string;
  /** For `docker`: the entrypoint, as an argv (a string is split on whitespace like a shell would, quotes kept). */
  readonly entrypoint?: readonly string[];
  readonly commands: readonly string[];
  readonly setup: readonly string[];
  readonly deps: readonly DepSpec[];
  readonly artifacts: readonly ArtifactSpec[];
  /** Paths kept between runs of the same workflow; may start with `~/`. */
  readonly cache: readonly string[];
  /** `K=V` entries. A name with no value (`- FOO`) takes the value from the invoking environment at run time. */
  readonly env: readonly { readonly name: string; readonly value?: string }[];
  /** Container ports to publish; `ports: 2` in dstack 0.7 means two ports picked by dstack. */
  readonly ports: number;
  /** How many times an interrupted job (its spot instance taken back) runs again on a new machine. */
  readonly retry?: number;
  readonly workingDir?: string;
  /** As written (`3.10` stays `3.10`, never the float 3.1). */
  readonly python?: string;
  readonly inputs?: readonly string[];
  readonly resources: Resources;
  readonly registryAuth?: { readonly username: string; readonly password: string };
  readonly placement?: Placement;
  readonly location: SourceLocation;
  readonly fieldLocations: ReadonlyMap<string, SourceLocation>;
}

/** `.dstack/variables.yaml`: `global` and per-workflow defaults. */
export interface VariablesFile {
  readonly global: Readonly<Record<string, string>>;
  readonly perWorkflow: Readonly<Record<string, Readonly<Record<string, string>>>>;
  readonly locations: ReadonlyMap<string, SourceLocation>;
}

/**
 * What a problem found while loading takes down:
 * - `workflows`: these workflows cannot run (nor anything that depends on them): one, or the
 *   members of a dependency cycle;
 * - `file`: the file could not be read at all, so the workflows in it are unknown (`workflows` holds
 *   the names that could still be made out, to say why `dstack run NAME` finds no NAME);
 * - `project`: every run (a broken `.dstack/variables.yaml`: any workflow may read its values);
 * - `entry`: a list entry that is no workflow (no name): nothing runnable, reported all the same.
 */
export type DiagnosticScope =
  | { readonly kind: 'workflows'; readonly names: readonly string[] }
  | { readonly kind: 'file'; readonly file: string; readonly workflows: readonly string[] }
  | { readonly kind: 'project' }
  | { readonly kind: 'entry' };

/**
 * A problem the loader found, as plain data (the parsed-project cache stores it): a DstackError's
 * fields plus what it takes down. `error` blocks a run that includes its scope; `warning` never
 * blocks, it tells (an absolute artifact that runs cannot save yet).
 */
export interface Diagnostic {
  readonly severity: 'error' | 'warning';
  readonly scope: DiagnosticScope;
  readonly code: ErrorCode;
  readonly message: string;
  readonly location?: SourceLocation;
  readonly lineText?: string;
  readonly hint?: string;
}

export interface Project {
  /** Absolute path of the folder holding `.dstack/`. */
  readonly root: string;
  /** The workflows that loaded; one with an error diagnostic is here too when its spec could be made. */
  readonly workflows: ReadonlyMap<string, WorkflowSpec>;
  readonly variables: VariablesFile;
  /** Every problem found in every file, in file and reading order. */
  readonly diagnostics: readonly Diagnostic[];
}

/**
 * A secret reference that survived resolution. Secrets are resolved only when a container starts;
 * until then a resolved string holds this marker in their place, so run records, logs and
 * fingerprints only ever see the name.
 */
export const secretMarker = (name: string): string => `\u0000secret:${name}\u0000`;
// eslint-disable-next-line no-control-regex
export const SECRET_MARKER_RE = /\u0000secret:([A-Za-z_][A-Za-z0-9_]*)\u0000/g;

/** A job ready to run: every template resolved except secrets (see `secretMarker`). */
export interface JobSpec {
  readonly workflow: string;
  readonly provider: Provider;
  readonly image: string;
  /**
   * Present when `image` is provider bash's default (default-image.ts), not the workflow's own: an
   * absent default image then says to set `image:` or pull it (DS0043). Not part of the fingerprint.
   */
  readonly defaultImage?: true;
  /** The argv the container runs, e.g. `['/bin/sh', '-c', 'set -e\n…']`; undefined keeps the image's own. */
  readonly command?: readonly string[];
  readonly entrypoint?: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Relative to `/workflow`. '' means `/workflow` itself. */
  readonly workingDir: string;
  readonly ports: number;
  /** Resubmissions left to an interrupted job (`retry:`, or `--retry N` for the whole run); not fingerprinted. */
  readonly retry?: number;
  readonly artifacts: readonly ArtifactSpec[];
  readonly cache: readonly string[];
  readonly inputs?: readonly string[];
  readonly resources: Resources;
  readonly registryAuth?: { readonly username: string; readonly password: string };
  /** The variables the job saw, after overrides (recorded; part of the fingerprint later). */
  readonly variables: Readonly<Record<string, string>>;
  readonly args: readonly string[];
  readonly deps: readonly DepSpec[];
}

export const RUN_STATUSES = [
  'submitted',
  'provisioning',
  'downloading',
  'running',
  'uploading',
  'done',
  'failed',
  'stopped',
  'aborted',
  'interrupted',
] as const;
export type JobStatus = (typeof RUN_STATUSES)[number];
export const FINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['done', 'failed', 'stopped', 'aborted', 'interrupted']);
export const isFinal = (s: JobStatus): boolean => FINAL_STATUSES.has(s);

/** Where the run's code came from. */
export interface RepoInfo {
  readonly root: string;
  readonly isGit: boolean;
  readonly branch?: string;
  readonly commit?: string;
  /** sha256 of `git diff HEAD` plus the untracked files' content; undefined when clean or not git. */
  readonly diffHash?: string;
}

/** Command-line overrides of the named workflow (`--cpu 4 --memory 8GB -e K=V -a out --dep wf`). Sizes as written. */
export interface JobOverrides {
  readonly cpu?: number;
  readonly memory?: string;
  readonly gpu?: number;
  readonly gpuName?: string;
  readonly gpuMemory?: string;
  readonly shmSize?: string;
  readonly interruptible?: boolean;
  /** `K=V` or `K` (from the invoking environment). */
  readonly env?: readonly string[];
  readonly artifacts?: readonly string[];
  /** `NAME` (workflow) or `:TAG`. */
  readonly deps?: readonly string[];
  readonly workingDir?: string;
}
