/**
 * Something on a host that stays ours only while we keep touching it — a lease slot (lease.ts), a
 * reap under way, an instance's heartbeat file (heartbeat.ts) — renewed in the background by one
 * small command at a time, and left to expire on its own when this process or its connection dies.
 */
import type { SshConnection } from './session.js';

export class Renewer {
  #timer: NodeJS.Timeout | undefined;
  #inflight: Promise<void> | undefined;
  #stopped = false;
  readonly #unsubscribe: () => void;

  /**
   * Runs `step` every `everyMs` until stopped, one at a time. `step` resolving false means the thing
   * is no longer ours (`onLost` is told, and renewal stops for good); a rejection (the connection
   * died) stops it silently.
   */
  constructor(
    connection: SshConnection,
    private readonly everyMs: number,
    private readonly step: () => Promise<boolean>,
    private readonly onLost?: () => void,
  ) {
    this.#unsubscribe = connection.onClose(() => this.#halt());
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#inflight = this.step().then(
        (kept) => {
          if (kept) return this.#schedule();
          this.#halt();
          this.onLost?.();
        },
        () => this.#halt(),
      );
    }, this.everyMs);
    // Renewal must not keep the process alive by itself.
    this.#timer.unref();
  }

  #halt(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#unsubscribe();
  }

  /** Stops, and waits for a renewal under way (so nothing touches the thing after a release). */
  async stop(): Promise<void> {
    this.#halt();
    await this.#inflight?.catch(() => undefined);
  }
}
