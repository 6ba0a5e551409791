/**
 * Secrets at execution: looking them up by name, putting their values where the container needs
 * them, and masking them in the job's output — across chunk boundaries, since a process writes
 * whenever it likes and a value can arrive split over two reads.
 */
import { DstackError } from './errors.js';
import { SECRET_MARKER_RE, type JobSpec } from './types.js';

/** Looks a secret up by name; undefined when it is not set. Values never go to the store or logs. */
export type SecretSource = (name: string) => string | undefined;

/**
 * A source over a plain record (`secrets.json`): only its own string values count, so a name like
 * `constructor` or `__proto__` is unknown like any other, not something inherited from Object.
 */
export function secretSourceOf(values: Readonly<Record<string, unknown>>): SecretSource {
  return (name) => {
    if (!Object.prototype.hasOwnProperty.call(values, name)) return undefined;
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
}

function lookUp(secrets: SecretSource, name: string, where: string): string {
  const value = secrets(name);
  if (typeof value !== 'string') {
    throw new DstackError('DS0016', `secret '${name}' used by ${where} is not set`, {
      hint: `add it with \`dstack secrets add ${name}\``,
    });
  }
  return value;
}

/** Replaces secret markers in `text` with their values; an unset secret is an error naming it. */
export function revealSecrets(text: string, secrets: SecretSource, where: string): string {
  return text.replace(SECRET_MARKER_RE, (_m, name: string) => lookUp(secrets, name, where));
}

/** Shows a marker the way the user wrote it, for records and messages. */
export const displaySecrets = (text: string): string => text.replace(SECRET_MARKER_RE, (_m, name: string) => `\${{ secrets.${name} }}`);

/** The environment variable that carries secret NAME into a shell command. */
export const secretEnvName = (name: string): string => `DSTACK_SECRET_${name}`;

const SHELLS: ReadonlySet<string> = new Set(['/bin/sh', 'sh', '/bin/bash', 'bash', '/usr/bin/env sh']);

/** What the container gets: the spec's command with secrets in place, its env, and the values revealed (to mask). */
export interface ContainerSecrets {
  readonly spec: JobSpec;
  readonly env: Readonly<Record<string, string>>;
  readonly revealed: readonly string[];
}

/**
 * Resolves the secrets a job uses for its container. In env values, the value itself. In a shell
 * command (`sh -c SCRIPT …`, what `commands:` become), a reference to an environment variable that
 * holds it (`${DSTACK_SECRET_NAME}`): the value never enters the command line (argv cannot carry
 * the marker's NUL bytes, which is how this broke, and `docker inspect`/`ps` would show a value
 * spliced in), and the shell expands it where it stands — except between single quotes, where a
 * shell expands nothing. In any other argv (a `docker` provider's own entrypoint) there is no shell
 * to expand a reference, so the value goes in as is. Every value revealed is masked in the output.
 */
export function containerSecrets(spec: JobSpec, secrets: SecretSource): ContainerSecrets {
  const revealed = new Map<string, string>();
  const reveal = (name: string, where: string): string => {
    const v = lookUp(secrets, name, where);
    revealed.set(name, v);
    return v;
  };
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.env)) env[k] = v.replace(SECRET_MARKER_RE, (_m, name: string) => reveal(name, `env ${k} of ${spec.workflow}`));
  const where = `the commands of ${spec.workflow}`;
  const literal = (s: string): string => s.replace(SECRET_MARKER_RE, (_m, name: string) => reveal(name, where));
  const byEnv = (s: string): string =>
    s.replace(SECRET_MARKER_RE, (_m, name: string) => {
      env[secretEnvName(name)] = reveal(name, where);
      return `\${${secretEnvName(name)}}`;
    });
  const shell = spec.command !== undefined && spec.entrypoint === undefined && SHELLS.has(spec.command[0] ?? '') && spec.command[1] === '-c';
  const command = spec.command?.map((arg, i) => (shell && i >= 2 ? byEnv(arg) : literal(arg)));
  const entrypoint = spec.entrypoint?.map(literal);
  return {
    spec: { ...spec, ...(command && { command }), ...(entrypoint && { entrypoint }) },
    env,
    revealed: [...revealed.values()],
  };
}

/** Values shorter than this are not masked: they would turn ordinary output into noise and hide nothing worth hiding. */
export const MIN_MASKED_LENGTH = 4;
const MASK = '***';
/** How long a possible start of a secret is held back before it is shown anyway (a prompt with no newline). */
export const MASK_FLUSH_MS = 100;

/**
 * Masks secret values in one output stream, whatever the chunking: the end of each chunk that
 * could be the start of a value is held back (at most the longest value's length − 1 bytes) until
 * the next chunk says, or until `flushMs` passes. Bytes are compared as they are (latin1 keeps a
 * byte per character), so a value split inside a multi-byte character is found too. A value that
 * starts in bytes shown by a timed flush is masked from where the shown part ends.
 */
export class StreamMasker {
  private readonly needles: readonly string[];
  private readonly longest: number;
  private held = '';
  /** Bytes a timed flush let out while they could still begin a value. */
  private shown = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    values: readonly string[],
    private readonly emit: (data: Buffer) => void,
    private readonly flushMs: number = MASK_FLUSH_MS,
  ) {
    const bytes = values.filter((v) => v.length >= MIN_MASKED_LENGTH).map((v) => Buffer.from(v, 'utf8').toString('latin1'));
    this.needles = [...new Set(bytes)].sort((a, b) => b.length - a.length);
    this.longest = this.needles[0]?.length ?? 0;
  }

  write(chunk: Buffer): void {
    if (this.needles.length === 0) return this.emit(chunk);
    this.cancelTimer();
    let text = this.held + chunk.toString('latin1');
    this.held = '';
    if (this.shown) text = this.maskContinuation(text);
    for (const n of this.needles) if (text.includes(n)) text = text.split(n).join(MASK);
    const hold = this.partialTail(text);
    if (hold > 0) {
      this.held = text.slice(text.length - hold);
      text = text.slice(0, text.length - hold);
      this.timer = setTimeout(() => this.flushHeld(), this.flushMs);
      this.timer.unref();
    }
    if (text) this.emit(Buffer.from(text, 'latin1'));
  }

  /** Lets out what is held (the stream ended, or the job did). */
  close(): void {
    this.cancelTimer();
    if (this.held) this.emit(Buffer.from(this.held, 'latin1'));
    this.held = '';
    this.shown = '';
  }

  private flushHeld(): void {
    this.timer = undefined;
    if (!this.held) return;
    this.shown = this.held;
    this.held = '';
    this.emit(Buffer.from(this.shown, 'latin1'));
  }

  private cancelTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** A value begun in `shown` and completed at the start of `text`: its rest becomes the mask. */
  private maskContinuation(text: string): string {
    const shown = this.shown;
    this.shown = '';
    for (let i = 0; i < shown.length; i++) {
      const begun = shown.slice(i);
      for (const n of this.needles) {
        if (n.length > begun.length && n.startsWith(begun) && text.startsWith(n.slice(begun.length))) {
          return MASK + text.slice(n.length - begun.length);
        }
      }
    }
    return text;
  }

  /** The length of the longest end of `text` that is a proper start of some value (0: none). */
  private partialTail(text: string): number {
    const from = Math.max(0, text.length - this.longest + 1);
    for (let i = from; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (!this.needles.some((n) => n.charCodeAt(0) === c)) continue;
      const tail = text.slice(i);
      if (this.needles.some((n) => n.length > tail.length && n.startsWith(tail))) return text.length - i;
    }
    return 0;
  }
}
