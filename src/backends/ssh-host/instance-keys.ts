/**
 * The keys of instances dstack launches. One ed25519 client key per dstack home
 * (`${home}/keys/instance_ed25519`, mode 0600, with its `.pub`), made on first use and authorized on
 * every instance; never the user's own keys, which stay where they are. And a fresh host key per
 * instance, handed to it at launch and pinned for every connection (host-keys.ts), so the first
 * connection is verified, never trusted blindly; its private half is never written here.
 */
import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DstackError } from '../../engine/errors.js';
import { loadSsh2 } from './connect.js';

export interface ClientKey {
  /** The private key file, mode 0600. */
  readonly path: string;
  /** `ssh-ed25519 AAAA… dstack`. */
  readonly publicKey: string;
}

export interface HostKeyPair {
  /** OpenSSH private key (PEM-armoured `OPENSSH PRIVATE KEY`). */
  readonly privateKey: string;
  /** `ssh-ed25519 AAAA…`. */
  readonly publicKey: string;
}

export const clientKeyPath = (home: string): string => join(home, 'keys', 'instance_ed25519');

/**
 * ssh2's generator drops a leading zero byte of an ed25519 key (1 pair in 256; mscdex/ssh2#1390, open): the pair it
 * returns is then "Malformed OpenSSH private key" to its own parser and to OpenSSH. Such a pair is
 * thrown away and another made; each try fails independently, so a few suffice.
 */
async function generate(comment: string): Promise<HostKeyPair> {
  const { utils } = await loadSsh2();
  for (let attempt = 1; ; attempt++) {
    const pair = utils.generateKeyPairSync('ed25519', { comment });
    const parsed = utils.parseKey(pair.private);
    if (!(parsed instanceof Error) && parsed.type === 'ssh-ed25519' && parsed.getPublicSSH().length === 51) {
      return { privateKey: pair.private, publicKey: pair.public.trim() };
    }
    if (attempt === 20) throw new Error(`ssh2 made ${attempt} malformed ed25519 key pairs in a row`);
  }
}

/** A new host key for one instance. */
export const newHostKey = (): Promise<HostKeyPair> => generate('dstack-instance-host');

const made = new Map<string, Promise<ClientKey>>();

/**
 * This home's client key, made the first time. Two processes making it at once agree on one: each
 * writes its own temporary file and the first `link` into place wins.
 */
export function clientKey(home: string): Promise<ClientKey> {
  const path = clientKeyPath(home);
  let p = made.get(path);
  if (!p) {
    p = ensureClientKey(path);
    p.catch(() => made.delete(path));
    made.set(path, p);
  }
  return p;
}

async function ensureClientKey(path: string): Promise<ClientKey> {
  const existing = await readClientKey(path);
  if (existing) return existing;
  await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
  const pair = await generate('dstack');
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(tmp, pair.privateKey, { mode: 0o600 });
    await chmod(tmp, 0o600); // whatever the umask
    // Only the private key decides: the public half is derived from whichever file won.
    await link(tmp, path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  } finally {
    await rm(tmp, { force: true });
  }
  const key = await readClientKey(path);
  if (!key) throw unusable(path, 'it vanished right after it was made');
  await writeFile(`${path}.pub`, `${key.publicKey}\n`, { mode: 0o644 });
  return key;
}

/** The key pair (its public half derived from the private key); undefined when not made yet. */
async function readClientKey(path: string): Promise<ClientKey | undefined> {
  let info;
  let data: Buffer;
  try {
    info = await stat(path);
    data = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw unusable(path, (e as Error).message);
  }
  if ((info.mode & 0o077) !== 0) throw unusable(path, `its mode is ${(info.mode & 0o777).toString(8)}, not 600`);
  const { utils } = await loadSsh2();
  const parsed = utils.parseKey(data);
  if (parsed instanceof Error || parsed.type !== 'ssh-ed25519') throw unusable(path, parsed instanceof Error ? parsed.message : `it is a ${parsed.type} key`);
  return { path, publicKey: `ssh-ed25519 ${parsed.getPublicSSH().toString('base64')} dstack` };
}

function unusable(path: string, why: string): DstackError {
  return new DstackError('DS0217', `dstack's SSH key for instances ${path} is unusable: ${why}`, {
    hint: `remove ${path} and ${path}.pub (a new pair is made at the next run), or fix its mode with \`chmod 600 ${path}\``,
  });
}
