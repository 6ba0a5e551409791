/**
 * Opening an SSH connection to a machine, shared by the remote backends (the pool now, AWS and GCP
 * after provisioning): the TCP connection and handshake, the host key checked (host-keys.ts:
 * known_hosts, or a key pinned for an instance dstack launched), the login with the user's keys
 * (auth.ts). What a connection then does — commands, SFTP, forwarded sockets — is session.ts.
 *
 * ssh2 is imported lazily, in `connectHost`, so that loading this module (for its types) costs
 * nothing on a local run.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ConnectConfig } from 'ssh2';
import { DstackError } from '../../engine/errors.js';
import { authPlan } from './auth.js';
import { hostKeyVerifier } from './host-keys.js';
import { fingerprint } from './known-hosts.js';
import { Connection, targetLabel, type SshConnection, type SshTarget } from './session.js';

export type { ExecOptions, ExecResult, RemoteProcess, SshConnection, SshTarget } from './session.js';
export { targetLabel } from './session.js';

export interface ConnectOptions {
  /** A private key file (`dstack config ssh --identity`); without it: the agent, then ~/.ssh/id_ed25519, id_rsa. */
  readonly identity?: string;
  /** Default `~/.ssh/known_hosts`. */
  readonly knownHostsPath?: string;
  /**
   * The public key blob the host must show: an instance dstack launched with a host key it made.
   * known_hosts is then neither read nor written.
   */
  readonly hostKey?: Buffer;
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

/** ssh2 is CommonJS: Node's ESM loader puts its exports on `default` (the bundle does too). */
export async function loadSsh2(): Promise<typeof import('ssh2')> {
  const mod = await import('ssh2');
  return (mod as unknown as { default?: typeof mod }).default ?? mod;
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
 * DS0206 (no usable key, or every key refused) or DS0207 (host key changed, revoked, or not the
 * pinned one); an aborted `signal` rejects with its reason.
 */
export async function connectHost(target: SshTarget, options: ConnectOptions = {}): Promise<SshConnection> {
  const { Client, utils } = await loadSsh2();
  const label = targetLabel(target);
  const env = options.env ?? process.env;
  const timeoutMs = options.timeoutMs ?? 15_000;
  options.signal?.throwIfAborted();

  const plan = await authPlan(target, { env, ...(options.identity ? { identity: options.identity } : {}), ...(options.notify ? { notify: options.notify } : {}) }, utils.parseKey);
  const hostKeys = await hostKeyVerifier(target, {
    env,
    knownHostsPath: options.knownHostsPath ?? join(env.HOME || homedir(), '.ssh', 'known_hosts'),
    ...(options.hostKey ? { pinned: options.hostKey } : {}),
    ...(options.notify ? { notify: options.notify } : {}),
  });

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
    algorithms: { serverHostKey: [...hostKeys.algorithms] as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] },
    authHandler: plan.methods,
    hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
      seenKey = key;
      hostKeys.verify(key).then(
        () => verify(true),
        (e: unknown) => {
          refusal = e instanceof DstackError ? e : new DstackError('DS0207', `cannot verify the host key of ${label}: ${(e as Error).message}`, { cause: e });
          verify(false);
        },
      );
    },
  };

  await handshake(client, config, {
    signal: options.signal,
    refusal: () => refusal,
    authFailed: (e) =>
      new DstackError('DS0206', `${label} refused authentication: offered ${plan.tried.join(', ')}`, {
        hint: `add your public key to ~${target.user}/.ssh/authorized_keys on the host, or name the right key with \`dstack config ssh --identity KEY\``,
        cause: e,
      }),
    unreachable: (e) => unreachable(label, e, timeoutMs),
  });
  return new Connection(client, target, fingerprint(seenKey ?? Buffer.alloc(0)));
}

interface HandshakeOutcomes {
  readonly signal: AbortSignal | undefined;
  /** Why the host key was refused, if it was. */
  readonly refusal: () => DstackError | undefined;
  readonly authFailed: (e: Error) => DstackError;
  readonly unreachable: (e: Error & { code?: string; level?: string }) => DstackError;
}

/** Resolves on `ready`; rejects with what ended the handshake, or the signal's reason. */
function handshake(client: import('ssh2').Client, config: ConnectConfig, o: HandshakeOutcomes): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      client.end();
      reject(o.signal?.reason);
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => {
      o.signal?.removeEventListener('abort', onAbort);
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
      const refusal = o.refusal();
      if (refusal) return reject(refusal);
      reject(e.level === 'client-authentication' ? o.authFailed(e) : o.unreachable(e));
    };
    const onEarlyClose = (): void => {
      done();
      reject(o.refusal() ?? o.unreachable(Object.assign(new Error('the connection closed during the SSH handshake'), { code: 'ECONNRESET' })));
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
}
