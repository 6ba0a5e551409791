/**
 * One SSH connection to a machine, shared by the remote backends (the pool now, AWS and GCP after
 * provisioning): connect with the user's keys, verify the host key against known_hosts, run
 * commands, SFTP, and forward a remote Unix socket (the Docker engine's) or TCP port (a job's
 * published port) back to this process.
 *
 * ssh2 is imported lazily, in `connectHost`, so that loading this module (for its types) costs
 * nothing on a local run.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { AnyAuthMethod, Client, ClientChannel, ConnectConfig, SFTPWrapper } from 'ssh2';
import { DstackError } from '../../engine/errors.js';
import { boundToChannel } from './shell.js';
import { checkHostKey, fingerprint, hostKeyName, keyTypeOf, knownHostsEntry, knownKeyTypes, parseKnownHosts } from './known-hosts.js';

export interface SshTarget {
  readonly user: string;
  readonly host: string;
  readonly port: number;
}

export interface ConnectOptions {
  /** A private key file (`dstack config ssh --identity`); without it: the agent, then ~/.ssh/id_ed25519, id_rsa. */
  readonly identity?: string;
  /** Default `~/.ssh/known_hosts`. */
  readonly knownHostsPath?: string;
  /** For the TCP connection and the SSH handshake together; default 15 s. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Told about a host trusted on first use, and about keys that could not be used. */
  readonly notify?: (message: string) => void;
  /** SSH-level keepalive; a host that misses 3 in a row is taken as gone. Default 5 s; 0 turns it off. */
  readonly keepaliveIntervalMs?: number;
  /** Where SSH_AUTH_SOCK and HOME come from; default process.env. */
  readonly env?: NodeJS.ProcessEnv;
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

const DEFAULT_HOST_KEY_ALGORITHMS = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
const algorithmsFor = (keyType: string): string[] => (keyType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [keyType]);

const SIGNALS: Readonly<Record<string, number>> = { HUP: 1, INT: 2, QUIT: 3, ABRT: 6, KILL: 9, USR1: 10, SEGV: 11, USR2: 12, PIPE: 13, ALRM: 14, TERM: 15 };

/** ssh2 is CommonJS: Node's ESM loader puts its exports on `default` (the bundle does too). */
async function loadSsh2(): Promise<typeof import('ssh2')> {
  const mod = await import('ssh2');
  return (mod as unknown as { default?: typeof mod }).default ?? mod;
}

/** Concurrent first connections to one new host (the pool's jobs) must append its line once. */
const appending = new Map<string, Promise<void>>();

async function readKnownHosts(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
}

async function rememberHost(path: string, target: SshTarget, key: Buffer): Promise<boolean> {
  const id = `${path}\0${hostKeyName(target.host, target.port)}\0${key.toString('base64')}`;
  const pending = appending.get(id);
  if (pending) {
    await pending;
    return false;
  }
  let added = false;
  const work = (async () => {
    // Another process may have added it since we read the file.
    const text = await readKnownHosts(path);
    if (checkHostKey(parseKnownHosts(text), target.host, target.port, key).status === 'known') return;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const sep = text.length > 0 && !text.endsWith('\n') ? '\n' : '';
    await appendFile(path, `${sep}${knownHostsEntry(target.host, target.port, key)}\n`, { mode: 0o644 });
    added = true;
  })();
  appending.set(id, work);
  try {
    await work;
  } finally {
    appending.delete(id);
  }
  return added;
}

interface AuthPlan {
  readonly methods: AnyAuthMethod[];
  /** What was offered, for the message when all of them are refused. */
  readonly tried: string[];
}

async function authPlan(target: SshTarget, options: ConnectOptions, parseKey: typeof import('ssh2').utils.parseKey): Promise<AuthPlan> {
  const env = options.env ?? process.env;
  const methods: AnyAuthMethod[] = [];
  const tried: string[] = [];
  const home = env.HOME || homedir();
  const agent = env.SSH_AUTH_SOCK && existsSync(env.SSH_AUTH_SOCK) ? env.SSH_AUTH_SOCK : undefined;
  const label = targetLabel(target);
  const addAgent = (): void => {
    if (!agent) return;
    methods.push({ type: 'agent', username: target.user, agent });
    tried.push(`the SSH agent (${agent})`);
  };
  // Read into memory for ssh2 and never written anywhere.
  const addKey = async (path: string, explicit: boolean): Promise<void> => {
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (e) {
      if (!explicit) return;
      const code = (e as NodeJS.ErrnoException).code;
      throw new DstackError('DS0206', `cannot log in to ${label}: identity file ${path} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`, {
        hint: 'fix the path with `dstack config ssh --name NAME --force --identity KEY …`',
      });
    }
    const parsed = parseKey(data);
    if (parsed instanceof Error) {
      const encrypted = /encrypted|passphrase/i.test(parsed.message);
      const why = encrypted ? 'is protected by a passphrase' : `is not a private key ssh2 can read (${parsed.message})`;
      if (explicit && !agent) {
        throw new DstackError('DS0206', `cannot log in to ${label}: identity file ${path} ${why}`, {
          hint: encrypted ? `load it into your SSH agent (\`ssh-add ${path}\`) and run again` : 'give a private key in OpenSSH or PEM format',
        });
      }
      options.notify?.(`not using ${path}: it ${why}${encrypted && agent ? ' (the SSH agent is tried instead)' : ''}`);
      return;
    }
    methods.push({ type: 'publickey', username: target.user, key: data });
    tried.push(`the key ${path}`);
  };

  if (options.identity) {
    await addKey(options.identity, true);
    // An identity protected by a passphrase is usable through the agent that holds it.
    if (methods.length === 0) addAgent();
  } else {
    addAgent();
    for (const name of ['id_ed25519', 'id_rsa']) await addKey(join(home, '.ssh', name), false);
  }
  if (methods.length === 0) {
    throw new DstackError('DS0206', `cannot log in to ${label}: no SSH key to offer`, {
      hint: `pass --identity KEY to \`dstack config ssh\`, start an SSH agent with your key, or create ${join(home, '.ssh', 'id_ed25519')} (ssh-keygen -t ed25519)`,
    });
  }
  return { methods, tried };
}

function unreachable(label: string, e: Error & { code?: string; level?: string }, timeoutMs: number): DstackError {
  const code = e.code ?? '';
  let reason: string;
  if (e.level === 'client-timeout' || code === 'ETIMEDOUT') reason = `no SSH answer within ${timeoutMs / 1000} s`;
  else if (code === 'ECONNREFUSED') reason = 'connection refused (is sshd running on that port?)';
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || e.level === 'client-dns') reason = `host name not found (${code || e.message})`;
  else if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') reason = 'no route to host';
  else if (code === 'ECONNRESET') reason = 'connection reset during the SSH handshake';
  else reason = e.message;
  return new DstackError('DS0205', `cannot reach ${label}: ${reason}`, {
    hint: 'check that the machine is up and that `ssh -p PORT USER@HOST` works from here',
    cause: e,
  });
}

/**
 * Connects, verifies the host key and authenticates. Fails with DS0205 (unreachable, timeout, DNS),
 * DS0206 (no usable key, or every key refused) or DS0207 (host key changed or revoked); an aborted
 * `signal` rejects with its reason.
 */
export async function connectHost(target: SshTarget, options: ConnectOptions = {}): Promise<SshConnection> {
  const { Client, utils } = await loadSsh2();
  const label = targetLabel(target);
  const env = options.env ?? process.env;
  const knownHostsPath = options.knownHostsPath ?? join(env.HOME || homedir(), '.ssh', 'known_hosts');
  const timeoutMs = options.timeoutMs ?? 15_000;
  options.signal?.throwIfAborted();

  const plan = await authPlan(target, options, utils.parseKey);
  const known = parseKnownHosts(await readKnownHosts(knownHostsPath));
  const preferred = knownKeyTypes(known, target.host, target.port).flatMap(algorithmsFor);
  const hostKeyAlgorithms = [...new Set([...preferred.filter((a) => DEFAULT_HOST_KEY_ALGORITHMS.includes(a)), ...DEFAULT_HOST_KEY_ALGORITHMS])];

  const client = new Client();
  // ssh2 can emit a second error after the first (a refused handshake, then "Connection lost"): never unhandled.
  client.on('error', () => undefined);
  let refusal: DstackError | undefined;
  let seenKey: Buffer | undefined;

  const config: ConnectConfig = {
    host: target.host,
    port: target.port,
    username: target.user,
    readyTimeout: timeoutMs,
    keepaliveInterval: options.keepaliveIntervalMs ?? 5_000,
    keepaliveCountMax: 3,
    algorithms: { serverHostKey: hostKeyAlgorithms as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] },
    authHandler: plan.methods,
    hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
      seenKey = key;
      const check = checkHostKey(known, target.host, target.port, key);
      const name = hostKeyName(target.host, target.port);
      const fp = fingerprint(key);
      if (check.status === 'known') return verify(true);
      if (check.status === 'changed' || check.status === 'revoked') {
        const where = check.status === 'changed' ? check.lines.map((l) => l.line).join(', ') : String(check.line.line);
        const defaultPath = join(env.HOME || homedir(), '.ssh', 'known_hosts');
        const file = knownHostsPath === defaultPath ? '' : ` -f ${knownHostsPath}`;
        refusal =
          check.status === 'changed'
            ? new DstackError('DS0207', `the host key of ${label} has changed: it now shows ${keyTypeOf(key)} ${fp}, not the key on line ${where} of ${knownHostsPath}`, {
                hint: `someone may be intercepting the connection; if the change is expected (the machine was reinstalled), remove the old key with \`ssh-keygen -R '${name}'${file}\` and run again`,
              })
            : new DstackError('DS0207', `the host key of ${label} (${keyTypeOf(key)} ${fp}) is marked @revoked on line ${where} of ${knownHostsPath}`, {
                hint: 'the machine must get a new host key before dstack connects to it',
              });
        return verify(false);
      }
      rememberHost(knownHostsPath, target, key).then(
        (added) => {
          if (added) options.notify?.(`new host ${name}: trusting its ${keyTypeOf(key)} key ${fp} on first use (added to ${knownHostsPath})`);
          verify(true);
        },
        (e: unknown) => {
          refusal = new DstackError('DS0207', `cannot record the host key of ${label} in ${knownHostsPath}: ${(e as Error).message}`, { cause: e });
          verify(false);
        },
      );
    },
  };

  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      client.end();
      reject(options.signal?.reason);
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => {
      options.signal?.removeEventListener('abort', onAbort);
      client.removeListener('ready', onReady);
      client.removeListener('error', onError);
      client.removeListener('close', onEarlyClose);
    };
    const onReady = (): void => {
      done();
      resolve();
    };
    const onError = (e: Error & { level?: string; code?: string }): void => {
      done();
      client.end();
      if (refusal) return reject(refusal);
      if (e.level === 'client-authentication') {
        return reject(
          new DstackError('DS0206', `${label} refused authentication: offered ${plan.tried.join(', ')}`, {
            hint: `add your public key to ~${target.user}/.ssh/authorized_keys on the host, or name the right key with \`dstack config ssh --identity KEY\``,
            cause: e,
          }),
        );
      }
      reject(unreachable(label, e, timeoutMs));
    };
    const onEarlyClose = (): void => {
      done();
      reject(refusal ?? unreachable(label, Object.assign(new Error('the connection closed during the SSH handshake'), { code: 'ECONNRESET' }), timeoutMs));
    };
    client.once('ready', onReady);
    client.once('error', onError);
    client.once('close', onEarlyClose);
    try {
      client.connect(config);
    } catch (e) {
      done();
      reject(e);
    }
  });

  return new Connection(client, target, fingerprint(seenKey ?? Buffer.alloc(0)));
}

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

class Connection implements SshConnection {
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
