/**
 * An SSH host as `user@host[:port]`: how the pool's config names its machines and how cloud
 * backends name the instances they provision.
 */
import { DstackError } from '../../engine/errors.js';

export interface SshHostSpec {
  readonly user: string;
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `user@host[:port]` (`user@[::1]:2222` for IPv6 with a port). Port 22 when absent.
 * Mistakes are DS0210 (exit 2) quoting the value.
 */
export function parseHostSpec(spec: string): SshHostSpec {
  const bad = (why: string): DstackError => new DstackError('DS0210', `invalid --host '${spec}': ${why}`, { hint: 'expected user@host or user@host:port, e.g. ubuntu@10.0.0.5:2222' });
  const at = spec.lastIndexOf('@');
  if (at < 0) throw bad('no user');
  const user = spec.slice(0, at);
  const rest = spec.slice(at + 1);
  if (!user) throw bad('no user before @');
  if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(user)) throw bad(`'${user}' is not a user name`);
  if (!rest) throw bad('no host after @');
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([0-9a-f:.]+)\](?::(.*))?$/i.exec(rest);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else if ((rest.match(/:/g) ?? []).length > 1) {
    host = rest; // a bare IPv6 address, no port
  } else {
    const colon = rest.indexOf(':');
    host = colon < 0 ? rest : rest.slice(0, colon);
    portText = colon < 0 ? undefined : rest.slice(colon + 1);
  }
  if (!host) throw bad('no host after @');
  if (!v6 && !host.includes(':') && !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$/i.test(host)) throw bad(`'${host}' is not a host name or address`);
  let port = 22;
  if (portText !== undefined) {
    if (!/^\d+$/.test(portText)) throw bad(`port '${portText}' is not a number`);
    port = Number(portText);
    if (port < 1 || port > 65535) throw bad(`port ${portText} is out of range (1-65535)`);
  }
  return { user, host, port };
}

/** `user@host`, with `:port` when not 22 (IPv6 in brackets then). */
export const formatHostSpec = (h: SshHostSpec): string =>
  h.port === 22 ? `${h.user}@${h.host}` : `${h.user}@${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`;

/** `user@host:port`, as connections label themselves and handles record them, back to the host. */
export function parseTargetLabel(label: string): SshHostSpec | undefined {
  const at = label.lastIndexOf('@');
  const colon = label.lastIndexOf(':');
  if (at <= 0 || colon <= at) return undefined;
  const port = Number(label.slice(colon + 1));
  if (!Number.isInteger(port)) return undefined;
  return { user: label.slice(0, at), host: label.slice(at + 1, colon), port };
}
