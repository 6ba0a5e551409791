/**
 * OpenSSH's known_hosts file, the part dstack needs: is this host key the one we know, a new host,
 * or a changed (or revoked) key? Follows sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT": `[marker] patterns
 * keytype base64 [comment]`, where patterns are a comma list of names with `*`/`?` wildcards and `!`
 * negations, `[host]:port` for a port other than 22, or one hashed name `|1|salt|hmac-sha1`
 * (HashKnownHosts). No npm package for this is maintained (the `known_hosts` package is a 2014
 * one-day project), and the format is small.
 *
 * Pure functions over the file's text; reading and appending live in connect.ts.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export interface KnownHostLine {
  /** 1-based, for messages ("line 3 of ~/.ssh/known_hosts"). */
  readonly line: number;
  readonly marker?: 'cert-authority' | 'revoked';
  /** The host field as written (a comma list, or one hashed name). */
  readonly hosts: string;
  readonly keyType: string;
  /** The public key blob (SSH wire format), decoded from base64. */
  readonly key: Buffer;
}

/** Parses the file's text; comments, blank and malformed lines are skipped as OpenSSH does. */
export function parseKnownHosts(text: string): KnownHostLine[] {
  const out: KnownHostLine[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const fields = (lines[i] ?? '').trim().split(/\s+/);
    if (!fields[0] || fields[0].startsWith('#')) continue;
    let marker: KnownHostLine['marker'];
    if (fields[0].startsWith('@')) {
      const m = fields.shift();
      if (m === '@cert-authority') marker = 'cert-authority';
      else if (m === '@revoked') marker = 'revoked';
      else continue;
    }
    const [hosts, keyType, b64] = fields;
    if (!hosts || !keyType || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) continue;
    const key = Buffer.from(b64, 'base64');
    // The blob starts with its own type; a line whose type disagrees is corrupt.
    if (keyTypeOf(key) !== keyType) continue;
    out.push({ line: i + 1, ...(marker ? { marker } : {}), hosts, keyType, key });
  }
  return out;
}

/** The name a host is filed under: `host` on port 22, else `[host]:port`. */
export const hostKeyName = (host: string, port: number): string => (port === 22 ? host : `[${host}]:${port}`);

/** The key type written inside a public key blob (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`). */
export function keyTypeOf(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const n = blob.readUInt32BE(0);
  if (n === 0 || n > 64 || 4 + n > blob.length) return undefined;
  return blob.subarray(4, 4 + n).toString('latin1');
}

/** `SHA256:…` as `ssh-keygen -l` prints it. */
export const fingerprint = (blob: Buffer): string => `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;

/** The line to append for a host seen for the first time. */
export const knownHostsEntry = (host: string, port: number, blob: Buffer): string =>
  `${hostKeyName(host, port)} ${keyTypeOf(blob) ?? 'unknown'} ${blob.toString('base64')}`;

function wildcard(pattern: string, name: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i').test(name);
}

function hashedMatch(field: string, name: string): boolean {
  const [, magic, salt, hash] = field.split('|');
  if (magic !== '1' || !salt || !hash) return false;
  const want = Buffer.from(hash, 'base64');
  const got = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Does a line's host field name this host and port? Negations win over matches, as in OpenSSH. */
export function hostsMatch(field: string, host: string, port: number): boolean {
  const name = hostKeyName(host, port);
  if (field.startsWith('|')) return hashedMatch(field, name);
  let matched = false;
  for (const raw of field.split(',')) {
    if (!raw) continue;
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    if (!wildcard(pattern, name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

export type HostKeyCheck =
  /** A line holds exactly this key. */
  | { readonly status: 'known'; readonly line: KnownHostLine }
  /** Never seen, or only keys of other types are known (OpenSSH adds those too). */
  | { readonly status: 'new'; readonly otherTypes: readonly string[] }
  /** Known with another key of the same type: refuse. */
  | { readonly status: 'changed'; readonly lines: readonly KnownHostLine[] }
  /** Marked `@revoked`: refuse. */
  | { readonly status: 'revoked'; readonly line: KnownHostLine };

/** Checks the key a host offered against the parsed file. `@cert-authority` lines are not used (no host certificates). */
export function checkHostKey(lines: readonly KnownHostLine[], host: string, port: number, key: Buffer): HostKeyCheck {
  const type = keyTypeOf(key);
  const revoked = lines.find((l) => l.marker === 'revoked' && l.key.equals(key));
  if (revoked) return { status: 'revoked', line: revoked };
  const mine = lines.filter((l) => l.marker === undefined && hostsMatch(l.hosts, host, port));
  const same = mine.find((l) => l.key.equals(key));
  if (same) return { status: 'known', line: same };
  const sameType = mine.filter((l) => l.keyType === type);
  if (sameType.length > 0) return { status: 'changed', lines: sameType };
  return { status: 'new', otherTypes: [...new Set(mine.map((l) => l.keyType))] };
}

/** Key types already known for a host, so the connection can prefer them (as OpenSSH orders HostKeyAlgorithms). */
export const knownKeyTypes = (lines: readonly KnownHostLine[], host: string, port: number): string[] => [
  ...new Set(lines.filter((l) => l.marker === undefined && hostsMatch(l.hosts, host, port)).map((l) => l.keyType)),
];
