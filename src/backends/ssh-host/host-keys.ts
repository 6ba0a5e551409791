/**
 * Is the host key a server shows the one we expect? Two policies:
 *
 * - known_hosts (the pool's machines, which the user set up): a known key passes, a changed or
 *   revoked one is refused (DS0207), a new host is trusted on first use and appended to the file —
 *   as OpenSSH's `StrictHostKeyChecking=accept-new`;
 * - pinned (an instance dstack launched with a host key it generated): exactly that key passes,
 *   anything else is refused, and no file is read or written — the first connection is verified,
 *   never trusted blindly.
 *
 * The file format itself is known-hosts.ts (pure); reading and appending are here.
 */
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { DstackError } from '../../engine/errors.js';
import { checkHostKey, fingerprint, hostKeyName, keyTypeOf, knownHostsEntry, knownKeyTypes, parseKnownHosts } from './known-hosts.js';
import { targetLabel, type SshTarget } from './session.js';

export interface HostKeyVerifier {
  /** Server host key algorithms to offer, the ones already known for the host first. */
  readonly algorithms: readonly string[];
  /** Resolves when the key is accepted; rejects with DS0207 when it is refused. */
  verify(key: Buffer): Promise<void>;
}

export interface HostKeyOptions {
  /** The known_hosts file (default `~/.ssh/known_hosts`); ignored when `pinned` is set. */
  readonly knownHostsPath?: string;
  /** The public key blob (SSH wire format) the host must show. */
  readonly pinned?: Buffer;
  /** Told about a host trusted on first use. */
  readonly notify?: (message: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

const DEFAULT_ALGORITHMS = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
const algorithmsFor = (keyType: string): string[] => (keyType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [keyType]);
const preferring = (types: readonly string[]): string[] => [...new Set([...types.flatMap(algorithmsFor).filter((a) => DEFAULT_ALGORITHMS.includes(a)), ...DEFAULT_ALGORITHMS])];

export async function hostKeyVerifier(target: SshTarget, options: HostKeyOptions): Promise<HostKeyVerifier> {
  if (options.pinned) return pinnedVerifier(target, options.pinned);
  const defaultPath = join(options.env.HOME || homedir(), '.ssh', 'known_hosts');
  const path = options.knownHostsPath ?? defaultPath;
  const known = parseKnownHosts(await readKnownHosts(path));
  const label = targetLabel(target);
  const name = hostKeyName(target.host, target.port);
  return {
    algorithms: preferring(knownKeyTypes(known, target.host, target.port)),
    verify: async (key) => {
      const check = checkHostKey(known, target.host, target.port, key);
      const fp = fingerprint(key);
      if (check.status === 'known') return;
      if (check.status === 'changed') {
        const file = path === defaultPath ? '' : ` -f ${path}`;
        throw new DstackError('DS0207', `the host key of ${label} has changed: it now shows ${keyTypeOf(key)} ${fp}, not the key on line ${check.lines.map((l) => l.line).join(', ')} of ${path}`, {
          hint: `someone may be intercepting the connection; if the change is expected (the machine was reinstalled), remove the old key with \`ssh-keygen -R '${name}'${file}\` and run again`,
        });
      }
      if (check.status === 'revoked') {
        throw new DstackError('DS0207', `the host key of ${label} (${keyTypeOf(key)} ${fp}) is marked @revoked on line ${check.line.line} of ${path}`, {
          hint: 'the machine must get a new host key before dstack connects to it',
        });
      }
      let added: boolean;
      try {
        added = await rememberHost(path, target, key);
      } catch (e) {
        throw new DstackError('DS0207', `cannot record the host key of ${label} in ${path}: ${(e as Error).message}`, { cause: e });
      }
      if (added) options.notify?.(`new host ${name}: trusting its ${keyTypeOf(key)} key ${fp} on first use (added to ${path})`);
    },
  };
}

function pinnedVerifier(target: SshTarget, pinned: Buffer): HostKeyVerifier {
  const type = keyTypeOf(pinned) ?? 'ssh-ed25519';
  return {
    algorithms: preferring([type]),
    verify: async (key) => {
      if (key.equals(pinned)) return;
      throw new DstackError('DS0207', `${targetLabel(target)} shows the host key ${keyTypeOf(key)} ${fingerprint(key)}, not the ${type} ${fingerprint(pinned)} dstack made for it`, {
        hint: 'someone may be intercepting the connection, or the address now belongs to another machine',
      });
    },
  };
}

/** The public key blob of an OpenSSH public key line (`ssh-ed25519 AAAA… comment`). */
export function publicKeyBlob(line: string): Buffer {
  const [type, b64] = line.trim().split(/\s+/);
  const blob = Buffer.from(b64 ?? '', 'base64');
  if (!type || keyTypeOf(blob) !== type) throw new Error(`not an OpenSSH public key: '${line.slice(0, 40)}…'`);
  return blob;
}

async function readKnownHosts(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
}

/** Concurrent first connections to one new host (the pool's jobs) must append its line once. */
const appending = new Map<string, Promise<boolean>>();

/** Appends the host's key unless the file has it by now (another process may have added it). True when added. */
async function rememberHost(path: string, target: SshTarget, key: Buffer): Promise<boolean> {
  const id = `${path}\0${hostKeyName(target.host, target.port)}\0${key.toString('base64')}`;
  const pending = appending.get(id);
  if (pending) {
    await pending;
    return false;
  }
  const work = (async () => {
    const text = await readKnownHosts(path);
    if (checkHostKey(parseKnownHosts(text), target.host, target.port, key).status === 'known') return false;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const sep = text.length > 0 && !text.endsWith('\n') ? '\n' : '';
    await appendFile(path, `${sep}${knownHostsEntry(target.host, target.port, key)}\n`, { mode: 0o644 });
    return true;
  })();
  appending.set(id, work);
  try {
    return await work;
  } finally {
    appending.delete(id);
  }
}
