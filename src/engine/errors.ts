/**
 * The error family. Every error a user can see has a stable code (never reused), a message that says
 * what happened and where, and, where one helps, the next command to try. Expected outcomes (a job
 * failed, a dep was cached) are events, not errors.
 */

/** Process exit codes; documented in README.md. */
export const ExitCode = {
  ok: 0,
  jobFailed: 1,
  usage: 2,
  backendUnavailable: 3,
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A place in a source file, 1-based. */
export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

/**
 * The catalogue. Add new codes at the end; never renumber or reuse one.
 * The exit code follows from the code, so the same failure always exits the same way.
 */
export const Codes = {
  // workflow files: 2
  DS0001: { title: 'malformed YAML', exit: ExitCode.usage },
  DS0002: { title: 'unknown field', exit: ExitCode.usage },
  DS0003: { title: 'wrong type or value', exit: ExitCode.usage },
  DS0004: { title: 'missing required field', exit: ExitCode.usage },
  DS0005: { title: 'workflow defined twice', exit: ExitCode.usage },
  DS0006: { title: 'unknown workflow', exit: ExitCode.usage },
  DS0007: { title: 'dependency cycle', exit: ExitCode.usage },
  DS0008: { title: 'unknown variable', exit: ExitCode.usage },
  DS0009: { title: 'path leaves the working directory', exit: ExitCode.usage },
  DS0010: { title: 'provider not offered', exit: ExitCode.usage },
  DS0011: { title: 'invalid size', exit: ExitCode.usage },
  DS0012: { title: 'no workflows file', exit: ExitCode.usage },
  DS0013: { title: 'unsupported feature', exit: ExitCode.usage },
  DS0014: { title: 'dependency has no successful run', exit: ExitCode.usage },
  DS0015: { title: 'unknown tag', exit: ExitCode.usage },
  DS0016: { title: 'unknown secret', exit: ExitCode.usage },
  // The loader and planner (issues 8 and 12): files that cannot be read, values no machine could
  // satisfy, workflows that cannot run yet, and arguments that look like mistyped variables: 2.
  DS0017: { title: 'workflow file not readable', exit: ExitCode.usage },
  DS0018: { title: 'YAML alias not allowed', exit: ExitCode.usage },
  DS0019: { title: 'value out of bounds', exit: ExitCode.usage },
  DS0020: { title: 'invalid image name', exit: ExitCode.usage },
  DS0021: { title: 'secret where it cannot be used', exit: ExitCode.usage },
  DS0022: { title: 'dep on another repository', exit: ExitCode.usage },
  DS0023: { title: 'dependency has errors', exit: ExitCode.usage },
  DS0024: { title: 'argument close to a variable or flag', exit: ExitCode.usage },
  DS0025: { title: 'artifact outside the working directory cannot be saved yet', exit: ExitCode.usage },
  DS0026: { title: 'conflicting placement', exit: ExitCode.usage },
  DS0027: { title: 'workflow not runnable yet', exit: ExitCode.usage },
  // command line: 2
  DS0100: { title: 'bad command-line usage', exit: ExitCode.usage },
  DS0101: { title: 'unknown run', exit: ExitCode.usage },
  DS0102: { title: 'invalid duration', exit: ExitCode.usage },
  DS0103: { title: 'refused without confirmation', exit: ExitCode.usage },
  DS0104: { title: 'run is still active', exit: ExitCode.usage },
  DS0105: { title: 'file already exists', exit: ExitCode.usage },
  DS0106: { title: 'tag already exists', exit: ExitCode.usage },
  DS0107: { title: 'path not found', exit: ExitCode.usage },
  DS0108: { title: 'invalid name', exit: ExitCode.usage },
  DS0109: { title: 'run did not succeed', exit: ExitCode.usage },
  // backends: 3
  DS0200: { title: 'Docker engine not reachable', exit: ExitCode.backendUnavailable },
  DS0201: { title: 'image not available', exit: ExitCode.backendUnavailable },
  DS0202: { title: 'GPU not supported by the engine', exit: ExitCode.backendUnavailable },
  DS0203: { title: 'container could not be created', exit: ExitCode.backendUnavailable },
  DS0204: { title: 'port could not be published', exit: ExitCode.backendUnavailable },
  DS0205: { title: 'SSH host unreachable', exit: ExitCode.backendUnavailable },
  DS0206: { title: 'SSH authentication refused', exit: ExitCode.backendUnavailable },
  DS0207: { title: 'SSH host key changed', exit: ExitCode.backendUnavailable },
  DS0208: { title: 'SSH connection lost', exit: ExitCode.backendUnavailable },
  DS0209: { title: 'SSH channel refused', exit: ExitCode.backendUnavailable },
  // remote configuration (`dstack config`): a usage mistake, 2
  DS0210: { title: 'invalid remote configuration', exit: ExitCode.usage },
  DS0211: { title: 'unknown remote', exit: ExitCode.usage },
  DS0212: { title: 'remote already exists', exit: ExitCode.usage },
  // store and artifacts
  DS0300: { title: 'run store error', exit: ExitCode.backendUnavailable },
  DS0301: { title: 'artifact error', exit: ExitCode.usage },
  DS0302: { title: 'unsafe artifact entry', exit: ExitCode.usage },
  // The store never serves wrong bytes; nothing is followed out of a job's folders (issue 7 §1–§2).
  // DS0303–DS0319 are this block's; the unused ones are reserved for it.
  DS0303: { title: 'stored object missing', exit: ExitCode.backendUnavailable },
  DS0304: { title: 'stored object damaged', exit: ExitCode.backendUnavailable },
  DS0305: { title: 'refused to follow a symlink', exit: ExitCode.usage },
  DS0306: { title: 'store verification found damage', exit: ExitCode.backendUnavailable },
  DS0307: { title: 'object damaged in transfer', exit: ExitCode.backendUnavailable },
  // interruption
  DS0400: { title: 'interrupted', exit: ExitCode.interrupted },
  // backend plugins, the lifecycle of machines that cost money, instances (issue 9): DS0213–DS0229
  DS0213: { title: 'job not supported by the backend', exit: ExitCode.usage },
  DS0214: { title: 'image differs from the fingerprinted one', exit: ExitCode.backendUnavailable },
  DS0215: { title: 'instance not reachable over SSH', exit: ExitCode.backendUnavailable },
  DS0216: { title: 'instance ended before the job could start', exit: ExitCode.backendUnavailable },
  DS0217: { title: 'dstack SSH key unusable', exit: ExitCode.backendUnavailable },
  // AWS (src/backends/aws, issue 10): DS0230–DS0259; the cloud unavailable or refusing is 3, a job no instance type fits 2
  DS0230: { title: 'AWS credentials missing or refused', exit: ExitCode.backendUnavailable },
  DS0231: { title: 'AWS region not set', exit: ExitCode.usage },
  DS0232: { title: 'no instance type fits the job', exit: ExitCode.usage },
  DS0233: { title: 'no capacity for any offer', exit: ExitCode.backendUnavailable },
  DS0234: { title: 'AWS request failed', exit: ExitCode.backendUnavailable },
  DS0235: { title: 'no machine image found', exit: ExitCode.backendUnavailable },
  DS0236: { title: 'instance bootstrap failed', exit: ExitCode.backendUnavailable },
  DS0237: { title: 'instance did not start running', exit: ExitCode.backendUnavailable },
  DS0238: { title: 'instance address unknown', exit: ExitCode.backendUnavailable },
  DS0239: { title: 'caller address unknown', exit: ExitCode.backendUnavailable },
  // the first hour: stopping, pulls, shared deps (issue 8); DS0130–DS0139 and DS0290–DS0299
  DS0130: { title: 'Docker engine has no init', exit: ExitCode.backendUnavailable },
  DS0290: { title: 'image needs registry credentials', exit: ExitCode.usage },
  DS0291: { title: 'registry refused the credentials', exit: ExitCode.usage },
  // the run store, logs and the disk under the dstack home: the machine's state, 3; a bad setting, 2
  DS0320: { title: 'disk full', exit: ExitCode.backendUnavailable },
  DS0321: { title: 'dstack home is read-only', exit: ExitCode.backendUnavailable },
  DS0322: { title: 'run store damaged', exit: ExitCode.backendUnavailable },
  DS0323: { title: 'run store record damaged', exit: ExitCode.backendUnavailable },
  DS0120: { title: 'invalid log limit', exit: ExitCode.usage },
  // 0.7 projects run (issue 12, the execution half): artifacts outside /workflow through the engine's
  // archive API, the default image of provider bash: DS0040–DS0059. The engine failing is 3, a job's
  // archive holding what cannot be kept 2.
  DS0040: { title: 'artifact outside /workflow could not be read', exit: ExitCode.backendUnavailable },
  DS0041: { title: 'unsafe entry in a container archive', exit: ExitCode.usage },
  DS0042: { title: 'artifact outside /workflow could not be restored', exit: ExitCode.backendUnavailable },
  DS0043: { title: 'default image not available', exit: ExitCode.backendUnavailable },
  DS0044: { title: 'no default image for this Python version', exit: ExitCode.usage },
  DS0045: { title: 'artifact outside /workflow over the size limit', exit: ExitCode.usage },
  DS0046: { title: 'invalid artifact limit', exit: ExitCode.usage },
  // the engine vanishing or freezing, leftovers (issue 7 §4): DS0060–DS0069, DS0140–DS0149; all 3
  DS0060: { title: 'Docker engine did not answer in time', exit: ExitCode.backendUnavailable },
  DS0061: { title: 'lost contact with the Docker engine', exit: ExitCode.backendUnavailable },
  // The team bucket: S3 or a shared folder, push/pull, remote runs, one cache (issue 11).
  // DS0260–DS0289 are this block's; the unused ones are reserved for it.
  DS0260: { title: 'bucket not found', exit: ExitCode.backendUnavailable },
  DS0261: { title: 'bucket access denied', exit: ExitCode.backendUnavailable },
  DS0262: { title: 'bucket unreachable', exit: ExitCode.backendUnavailable },
  DS0263: { title: 'bucket request failed', exit: ExitCode.backendUnavailable },
  DS0264: { title: 'object missing from the bucket', exit: ExitCode.backendUnavailable },
  DS0265: { title: 'object damaged in the bucket', exit: ExitCode.backendUnavailable },
  DS0266: { title: 'record damaged in the bucket', exit: ExitCode.backendUnavailable },
  DS0267: { title: 'no bucket configured', exit: ExitCode.usage },
  DS0268: { title: 'not a bucket remote', exit: ExitCode.usage },
  DS0269: { title: 'unknown run in the bucket', exit: ExitCode.usage },
  DS0270: { title: 'tag already exists in the bucket', exit: ExitCode.usage },
  DS0271: { title: 'pulled run clashes with a local run', exit: ExitCode.usage },
  DS0272: { title: 'dep on another repository not found', exit: ExitCode.usage },
  DS0273: { title: 'ambiguous repository', exit: ExitCode.usage },
  DS0274: { title: 'shared folder not usable', exit: ExitCode.backendUnavailable },
  DS0275: { title: 'repository id unreadable', exit: ExitCode.usage },
} as const;
export type ErrorCode = keyof typeof Codes;

export interface DstackErrorOptions {
  /** Where in a source file the problem is. */
  readonly location?: SourceLocation;
  /** The offending source line, shown under the message. */
  readonly lineText?: string;
  /** What was expected, or what to do next ("run `dstack ps -a` to list runs"). */
  readonly hint?: string;
  readonly cause?: unknown;
}

export class DstackError extends Error {
  readonly code: ErrorCode;
  readonly location: SourceLocation | undefined;
  readonly lineText: string | undefined;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: DstackErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DstackError';
    this.code = code;
    this.location = options.location;
    this.lineText = options.lineText;
    this.hint = options.hint;
  }

  get exitCode(): ExitCode {
    return Codes[this.code].exit;
  }
}

export const isDstackError = (e: unknown): e is DstackError => e instanceof DstackError;

/**
 * Several errors found in one pass (a workflow file with three mistakes reports all three).
 * Its code and exit status are the first error's.
 */
export class DstackErrors extends DstackError {
  readonly errors: readonly DstackError[];
  constructor(errors: readonly DstackError[]) {
    const first = errors[0];
    if (!first) throw new Error('DstackErrors needs at least one error');
    super(first.code, first.message, { location: first.location, lineText: first.lineText, hint: first.hint });
    this.errors = errors;
  }
}

/**
 * Renders an error for the terminal: `error DS0003: message`, `  --> file:line:col`, the line, a
 * caret, the hint. `label` is `warning` for a problem that does not stop the command.
 */
export function formatError(e: DstackError, label: 'error' | 'warning' = 'error'): string {
  const parts: string[] = [];
  for (const err of e instanceof DstackErrors ? e.errors : [e]) {
    const out = [`${label} ${err.code}: ${err.message}`];
    if (err.location) {
      const { file, line, col } = err.location;
      out.push(`  --> ${file}:${line}:${col}`);
      if (err.lineText !== undefined) {
        const gutter = String(line);
        out.push(`${' '.repeat(gutter.length)} |`);
        out.push(`${gutter} | ${err.lineText}`);
        out.push(`${' '.repeat(gutter.length)} | ${' '.repeat(Math.max(0, col - 1))}^`);
      }
    }
    if (err.hint) out.push(`  = ${err.hint}`);
    parts.push(out.join('\n'));
  }
  return parts.join('\n\n');
}
