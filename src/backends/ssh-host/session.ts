/**
 * An open SSH connection: commands (with their exit status, or streamed), SFTP, and streams to a
 * Unix socket or TCP port on the host. Made by `connectHost` (connect.ts) once the host key is
 * verified and the login accepted; shared by the jobs on that host.
 */
import type { Duplex, Readable, Writable } from 'node:stream';
import type { Client, ClientChannel, SFTPWrapper } from 'ssh2';
import { DstackError } from '../../engine/errors.js';
import { boundToChannel } from './shell.js';

export interface SshTarget {
  readonly user: string;
  readonly host: string;
  readonly port: number;
}

export interface ExecOptions {
  readonly stdin?: string | Buffer;
  /**
   * Aborting rejects at once with the reason, and ends the remote command: without `stdin`, the
   * command is wrapped by `boundToChannel` (its process group gets SIGTERM, also when the connection
   * drops); with `stdin`, only by a "signal" request, which sshd refuses for root logins.
   */
  readonly signal?: AbortSignal;
}

export interface ExecResult {
  /** The exit status; 128 + the signal's number when the remote process was killed by a signal. */
  readonly code: number;
  /** The signal that ended the remote process (`SIGKILL`, `SIGTERM`), if one did. */
  readonly signal?: string;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
}

/** A remote process with its streams, for long-running commands (logs, a lease holder). */
export interface RemoteProcess {
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when the channel closes (read or resume stdout and stderr); rejects with DS0208 when the connection drops first. */
  readonly exit: Promise<{ readonly code: number; readonly signal?: string }>;
  /**
   * Sends a signal request, ends stdin and closes the channel. sshd refuses signal requests for root
   * logins; wrap the command with `boundToChannel` (shell.ts) for a kill that always reaches it.
   */
  kill(signal?: 'TERM' | 'KILL' | 'INT' | 'HUP'): void;
}

export interface SshConnection {
  readonly target: SshTarget;
  /** `user@host:port`, for messages. */
  readonly label: string;
  /** The host key the server showed, verified; `SHA256:…`. */
  readonly hostKeyFingerprint: string;
  exec(command: string, options?: ExecOptions): Promise<ExecResult>;
  execStream(command: string, options?: { readonly signal?: AbortSignal }): Promise<RemoteProcess>;
  /** One SFTP session per connection, opened on first use. */
  sftp(): Promise<SFTPWrapper>;
  /** A stream to a Unix socket on the host (`direct-streamlocal@openssh.com`), e.g. /var/run/docker.sock. */
  forwardUnixSocket(path: string): Promise<Duplex>;
  /** A stream to a TCP port on the host's loopback (or `remoteHost`). */
  forwardTcp(remotePort: number, remoteHost?: string): Promise<Duplex>;
  /** Called once when the connection ends; `error` is set when it did not end by `close()`. Returns an unsubscribe. */
  onClose(listener: (error?: DstackError) => void): () => void;
  readonly closed: boolean;
  /** Ends the connection; resolves once the socket is closed. Idempotent. */
  close(): Promise<void>;
}

export const targetLabel = (t: SshTarget): string => `${t.user}@${t.host}:${t.port}`;

const SIGNALS: Readonly<Record<string, number>> = { HUP: 1, INT: 2, QUIT: 3, ABRT: 6, KILL: 9, USR1: 10, SEGV: 11, USR2: 12, PIPE: 13, ALRM: 14, TERM: 15 };

/**
 * ssh2's `Channel.signal` sends nothing once our side of the channel has ended (stdin closed), which
 * `exec` does at once; the request itself is valid until the channel closes, so send it directly.
 */
function sendSignal(ch: ClientChannel, signal: string): void {
  const internal = ch as unknown as { outgoing?: { id: number; state: string }; _client?: { _protocol?: { signal(id: number, name: string): void } } };
  try {
    if (internal.outgoing?.state === 'open' || internal.outgoing?.state === 'eof') internal._client?._protocol?.signal(internal.outgoing.id, signal);
    else ch.signal(signal);
  } catch {
    // the channel or the connection is already gone
  }
}

export class Connection implements SshConnection {
  readonly label: string;
  #closed = false;
  #closing = false;
  #error: DstackError | undefined;
  #sftp: Promise<SFTPWrapper> | undefined;
  readonly #listeners = new Set<(error?: DstackError) => void>();
  readonly #closedPromise: Promise<void>;

  constructor(
    private readonly client: Client,
    readonly target: SshTarget,
    readonly hostKeyFingerprint: string,
  ) {
    this.label = targetLabel(target);
    client.on('error', (e: Error & { level?: string }) => {
      this.#error ??= this.#lost(e.level === 'client-timeout' ? 'the host stopped answering keepalives' : e.message, e);
    });
    this.#closedPromise = new Promise((resolve) => {
      client.once('close', () => {
        this.#closed = true;
        if (!this.#closing) this.#error ??= this.#lost('the server closed the connection');
        const error = this.#closing ? undefined : this.#error;
        for (const l of this.#listeners) l(error);
        this.#listeners.clear();
        resolve();
      });
    });
  }

  #lost(reason: string, cause?: unknown): DstackError {
    return new DstackError('DS0208', `lost the SSH connection to ${this.label}: ${reason}`, cause === undefined ? {} : { cause });
  }

  get closed(): boolean {
    return this.#closed;
  }

  #ensureOpen(): void {
    if (this.#closed || this.#closing) throw this.#error ?? this.#lost('the connection is closed');
  }

  /** `opened` runs synchronously in ssh2's callback: events parsed from the same packet batch (an exit status) are not missed. */
  #channel<T>(open: (cb: (err: Error | undefined, ch: T) => void) => void, what: string, opened?: (ch: T) => void): Promise<T> {
    this.#ensureOpen();
    return new Promise<T>((resolve, reject) => {
      open((err, ch) => {
        if (!err) {
          opened?.(ch);
          return resolve(ch);
        }
        if (this.#closed) return reject(this.#error ?? this.#lost(err.message, err));
        reject(new DstackError('DS0209', `${this.label} refused ${what}: ${err.message.replace(/^\(SSH\) /, '')}`, { cause: err }));
      });
    });
  }

  async execStream(command: string, options: { readonly signal?: AbortSignal } = {}): Promise<RemoteProcess> {
    options.signal?.throwIfAborted();
    let exit!: Promise<{ code: number; signal?: string }>;
    const watch = (ch: ClientChannel): void => {
      exit = new Promise((resolve, reject) => {
        // 'close' carries the exit status (code, or null and the signal), as a child process's does.
        ch.once('close', (code?: number | null, signal?: string) => {
          if (typeof code === 'number') return resolve({ code });
          if (code === null && signal) return resolve({ code: 128 + (SIGNALS[signal.replace(/^SIG/, '')] ?? 0), signal });
          if (this.#error) return reject(this.#error);
          // ssh2 closes the channels just after the connection's own 'close': wait a turn to name the cause.
          setImmediate(() => reject(this.#error ?? this.#lost(`\`${command.length > 60 ? `${command.slice(0, 57)}...` : command}\` ended without an exit status`)));
        });
      });
    };
    const ch = await this.#channel<ClientChannel>((cb) => this.client.exec(command, cb), 'to run a command', watch);
    // A caller that only awaits `exit` later must not see an unhandled rejection first.
    exit.catch(() => undefined);
    const kill = (signal: 'TERM' | 'KILL' | 'INT' | 'HUP' = 'TERM'): void => {
      sendSignal(ch, signal);
      // EOF first: a command wrapped by boundToChannel terminates on it.
      ch.end();
      ch.close();
    };
    if (options.signal) {
      const onAbort = (): void => kill('TERM');
      options.signal.addEventListener('abort', onAbort, { once: true });
      void exit.finally(() => options.signal?.removeEventListener('abort', onAbort)).catch(() => undefined);
    }
    return { stdin: ch, stdout: ch, stderr: ch.stderr, exit, kill };
  }

  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const signal = options.signal;
    // With a signal and no input, the command is bound to the channel's stdin, which stays open
    // until the command ends: ending it (abort) or losing the connection terminates the command.
    const bound = signal !== undefined && options.stdin === undefined;
    const proc = await this.execStream(bound ? boundToChannel(command) : command, signal ? { signal } : {});
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    proc.stdout.on('data', (d: Buffer) => out.push(d));
    proc.stderr.on('data', (d: Buffer) => err.push(d));
    if (bound) void proc.exit.finally(() => proc.stdin.end()).catch(() => undefined);
    else proc.stdin.end(options.stdin ?? undefined);
    // sshd keeps the channel open until the process's output closes: an abort does not wait for that.
    const aborted = signal
      ? new Promise<never>((_, reject) => {
          const onAbort = (): void => reject(signal.reason);
          signal.addEventListener('abort', onAbort, { once: true });
          void proc.exit.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => undefined);
        })
      : undefined;
    try {
      const status = await (aborted ? Promise.race([proc.exit, aborted]) : proc.exit);
      options.signal?.throwIfAborted();
      return { ...status, stdout: Buffer.concat(out), stderr: Buffer.concat(err) };
    } catch (e) {
      options.signal?.throwIfAborted();
      throw e;
    }
  }

  sftp(): Promise<SFTPWrapper> {
    if (!this.#sftp) {
      const opening = this.#channel<SFTPWrapper>((cb) => this.client.sftp(cb), 'an SFTP session');
      this.#sftp = opening;
      opening.then(
        (s) => s.once('close', () => (this.#sftp = undefined)),
        () => (this.#sftp = undefined),
      );
    }
    return this.#sftp;
  }

  forwardUnixSocket(path: string): Promise<Duplex> {
    return this.#channel<ClientChannel>((cb) => this.client.openssh_forwardOutStreamLocal(path, cb), `to open the socket ${path}`);
  }

  forwardTcp(remotePort: number, remoteHost = '127.0.0.1'): Promise<Duplex> {
    return this.#channel<ClientChannel>((cb) => this.client.forwardOut('127.0.0.1', 0, remoteHost, remotePort, cb), `to open ${remoteHost}:${remotePort}`);
  }

  onClose(listener: (error?: DstackError) => void): () => void {
    if (this.#closed) {
      queueMicrotask(() => listener(this.#closing ? undefined : this.#error));
      return () => undefined;
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closing = true;
      this.client.end();
    }
    await this.#closedPromise;
  }
}
