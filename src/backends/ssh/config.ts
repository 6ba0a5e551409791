/**
 * The remotes a user has configured, in `${DSTACK_HOME}/config.json` (mode 0600, replaced
 * atomically): `{"default": "lab", "remotes": [{name, kind: "ssh", hosts: [{user, host, port}],
 * identity?, jobsPerHost}]}`. Top-level keys this module does not know are kept as they are, so
 * later settings can live in the same file.
 *
 * No SSH here: `dstack config` and `findRemote` stay cheap.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DstackError } from '../../engine/errors.js';
import { BUCKET_KINDS, checkBucketRemote, type BucketRemote } from '../../remote-store/config.js';
import type { SshHostSpec } from '../ssh-host/host-spec.js';

export { formatHostSpec, parseHostSpec, type SshHostSpec } from '../ssh-host/host-spec.js';

export interface SshRemote {
  readonly name: string;
  readonly kind: 'ssh';
  readonly hosts: readonly SshHostSpec[];
  /** An absolute path to a private key; absent: the agent, then ~/.ssh/id_ed25519, id_rsa. */
  readonly identity?: string;
  /** How many jobs one host runs at once. */
  readonly jobsPerHost: number;
}

/** Every kind of remote; AWS and GCP join this union. Bucket remotes (folder, s3) store runs, they run nothing. */
export type RemoteConfig = SshRemote | BucketRemote;

export interface DstackConfig {
  /** The remote that `--remote` alone means. */
  readonly default?: string;
  readonly remotes: readonly RemoteConfig[];
  readonly [other: string]: unknown;
}

export const configPath = (home: string): string => join(home, 'config.json');

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/i;

/** Checks a remote's name: letters, digits, `-` and `_`, as it appears in `ssh:NAME`. */
export function checkRemoteName(name: string): string {
  if (!NAME.test(name)) {
    throw new DstackError('DS0210', `invalid remote name '${name}'`, { hint: 'use letters, digits, - and _ (up to 63), starting with a letter or digit' });
  }
  return name;
}

function invalidFile(home: string, why: string): DstackError {
  return new DstackError('DS0210', `${configPath(home)} is not a valid dstack configuration: ${why}`, {
    hint: 'fix or remove the file; `dstack config ssh` writes a new one',
  });
}

function checkRemote(home: string, raw: unknown, index: number): RemoteConfig {
  const where = `remotes[${index}]`;
  if (typeof raw !== 'object' || raw === null) throw invalidFile(home, `${where} is not an object`);
  const r = raw as Record<string, unknown>;
  if (typeof r.name !== 'string' || !NAME.test(r.name)) throw invalidFile(home, `${where}.name is missing or invalid`);
  if (typeof r.kind === 'string' && BUCKET_KINDS.includes(r.kind)) {
    const checked = checkBucketRemote(raw);
    if (!checked.ok) throw invalidFile(home, `${where} (${r.name}): ${checked.why}`);
    return checked.remote;
  }
  if (r.kind !== 'ssh') throw invalidFile(home, `${where} (${r.name}) has an unknown kind ${JSON.stringify(r.kind)}`);
  if (!Array.isArray(r.hosts) || r.hosts.length === 0) throw invalidFile(home, `${where} (${r.name}) has no hosts`);
  const hosts = r.hosts.map((h: unknown, i: number): SshHostSpec => {
    const o = (typeof h === 'object' && h !== null ? h : {}) as Record<string, unknown>;
    if (typeof o.user !== 'string' || !o.user || typeof o.host !== 'string' || !o.host || !Number.isInteger(o.port) || (o.port as number) < 1 || (o.port as number) > 65535) {
      throw invalidFile(home, `${where}.hosts[${i}] (${r.name}) needs user, host and a port in 1-65535`);
    }
    return { user: o.user, host: o.host, port: o.port as number };
  });
  const jobsPerHost = r.jobsPerHost ?? 1;
  if (!Number.isInteger(jobsPerHost) || (jobsPerHost as number) < 1) throw invalidFile(home, `${where}.jobsPerHost (${r.name}) must be a whole number ≥ 1`);
  if (r.identity !== undefined && typeof r.identity !== 'string') throw invalidFile(home, `${where}.identity (${r.name}) must be a path`);
  return { name: r.name, kind: 'ssh', hosts, ...(r.identity ? { identity: r.identity } : {}), jobsPerHost: jobsPerHost as number };
}

/** The configuration; an empty one when the file does not exist. A malformed file is DS0210. */
export async function readConfig(home: string): Promise<DstackConfig> {
  let text: string;
  try {
    text = await readFile(configPath(home), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { remotes: [] };
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw invalidFile(home, (e as Error).message);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalidFile(home, 'not a JSON object');
  const obj = raw as Record<string, unknown>;
  const remotes = obj.remotes === undefined ? [] : obj.remotes;
  if (!Array.isArray(remotes)) throw invalidFile(home, '"remotes" is not a list');
  const checked = remotes.map((r, i) => checkRemote(home, r, i));
  if (obj.default !== undefined && typeof obj.default !== 'string') throw invalidFile(home, '"default" is not a name');
  const { default: def, remotes: _ignored, ...rest } = obj;
  return { ...rest, ...(typeof def === 'string' ? { default: def } : {}), remotes: checked };
}

/** Replaces the file atomically (a temporary file in the same folder, then rename), mode 0600. */
export async function writeConfig(home: string, cfg: DstackConfig): Promise<void> {
  await mkdir(home, { recursive: true });
  const path = configPath(home);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const { default: def, remotes, ...rest } = cfg;
  const body = { ...rest, ...(def !== undefined ? { default: def } : {}), remotes };
  try {
    await writeFile(tmp, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600); // whatever the umask
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * The remote named `name`, or the default one when `name` is undefined. DS0211 (exit 2) when there
 * is no such remote, or no default, saying how to add or choose one.
 */
export async function findRemote(home: string, name?: string): Promise<RemoteConfig> {
  const cfg = await readConfig(home);
  if (name === undefined) {
    if (cfg.remotes.length === 0) {
      throw new DstackError('DS0211', 'no remote is configured', { hint: 'add one: dstack config ssh --name NAME --host user@host[:port]' });
    }
    if (cfg.default === undefined) {
      throw new DstackError('DS0211', 'no default remote', {
        hint: `name one with --remote NAME (${cfg.remotes.map((r) => r.name).join(', ')}), or make one the default: dstack config ssh --name NAME --default`,
      });
    }
    name = cfg.default;
  }
  const found = cfg.remotes.find((r) => r.name === name);
  if (!found) {
    const known = cfg.remotes.map((r) => r.name);
    throw new DstackError('DS0211', `no remote named '${name}'`, {
      hint: known.length ? `configured remotes: ${known.join(', ')} (see \`dstack config list\`)` : 'add one: dstack config ssh --name NAME --host user@host[:port]',
    });
  }
  return found;
}
