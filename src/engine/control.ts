/**
 * How a run is told to end early. The first request stops gracefully (SIGTERM, grace period,
 * SIGKILL; artifacts saved; `stopped`); a second one, or an explicit abort, aborts (`aborted`,
 * nothing saved). Teardown runs either way.
 */
export type ControlMode = 'running' | 'stopping' | 'aborting';

export class RunControl {
  #mode: ControlMode = 'running';
  readonly #abort = new AbortController();
  readonly #listeners = new Set<(mode: ControlMode) => void>();

  get mode(): ControlMode {
    return this.#mode;
  }

  /** Aborted only on abort: a graceful stop lets jobs finish saving. */
  get abortSignal(): AbortSignal {
    return this.#abort.signal;
  }

  /** The first call stops gracefully, a second aborts. */
  interrupt(): ControlMode {
    if (this.#mode === 'running') this.stop();
    else this.abort();
    return this.#mode;
  }

  stop(): void {
    if (this.#mode !== 'running') return;
    this.#set('stopping');
  }

  abort(): void {
    if (this.#mode === 'aborting') return;
    this.#set('aborting');
    this.#abort.abort(new Error('run aborted'));
  }

  /** Calls `fn` on every change of mode; returns the function that unsubscribes. */
  onChange(fn: (mode: ControlMode) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #set(mode: ControlMode): void {
    this.#mode = mode;
    for (const fn of [...this.#listeners]) fn(mode);
  }
}
