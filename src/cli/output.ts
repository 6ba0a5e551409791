/**
 * The CLI's only way to its stdout and stderr. A reader that goes away (`dstack run … | head`,
 * `dstack logs RUN | head`) closes the pipe: Node then reports EPIPE as an 'error' event, which
 * with no listener is an uncaught exception — a stack trace, exit 1, and a run killed halfway and
 * recorded `aborted` (issue 8). Here a closed stream stops the writing, never the work: later writes
 * are dropped, the run goes on to its end and is recorded truthfully, and the command exits with
 * its usual status, quietly. A command with nothing left to do once nobody reads (`logs`, `ps -w`)
 * asks `readerGone(stream)` and ends early.
 */
import { Writable } from 'node:stream';

export class Output extends Writable {
  readonly #target: NodeJS.WriteStream;
  #closed = false;
  /** The callback of a write waiting for the target to drain, released when the target fails. */
  #pending: (() => void) | undefined;

  constructor(target: NodeJS.WriteStream) {
    super({ decodeStrings: false });
    this.#target = target;
    // Also guards whatever writes to the raw stream (readline's prompt on stderr).
    target.on('error', () => this.#lost());
  }

  /** The reader went away (or the stream failed otherwise): nothing written reaches anyone. */
  get gone(): boolean {
    return this.#closed;
  }

  get isTTY(): boolean {
    return Boolean(this.#target.isTTY);
  }

  get columns(): number | undefined {
    return this.#target.columns;
  }

  override _write(chunk: Buffer | string, encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.#closed) {
      done();
      return;
    }
    // Writes to files, pipes and terminals are synchronous on Linux: acknowledging at once keeps
    // stdout and stderr in the order they were written. Only a target that buffers is waited for.
    const flushed = typeof chunk === 'string' ? this.#target.write(chunk, encoding) : this.#target.write(chunk);
    if (flushed || this.#closed) {
      done();
      return;
    }
    this.#pending = () => {
      this.#pending = undefined;
      done();
    };
    this.#target.once('drain', () => this.#pending?.());
  }

  #lost(): void {
    this.#closed = true;
    this.#pending?.();
  }
}

let streams: { readonly stdout: Output; readonly stderr: Output } | undefined;

/** The process's stdout and stderr, guarded; one pair per process. */
export function stdio(): { readonly stdout: Output; readonly stderr: Output } {
  streams ??= { stdout: new Output(process.stdout), stderr: new Output(process.stderr) };
  return streams;
}

/** True once `stream` is a guarded output whose reader has gone away. */
export const readerGone = (stream: unknown): boolean => stream instanceof Output && stream.gone;
