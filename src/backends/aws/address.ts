/**
 * Where to reach an instance over SSH: its public address, port 22 — except under test.
 *
 * `DSTACK_INSTANCE_ADDRESS_MAP` (test-only) names a JSON file of instance id → `host:port`, written by
 * the tests' instance watcher, which plays each instance by a container on a loopback port. When it
 * is set, only the map counts: an instance without an entry has no address yet (the file is read
 * again on every try), and its public address is never used. EC2 emulators hand out real public
 * addresses that belong to someone else: with a custom EC2 endpoint (`AWS_ENDPOINT_URL`) and no map,
 * dstack refuses to connect at all (DS0238).
 */
import { readFile } from 'node:fs/promises';
import { DstackError } from '../../engine/errors.js';
import type { InstanceInfo } from './api.js';

export const ADDRESS_MAP_ENV = 'DSTACK_INSTANCE_ADDRESS_MAP';

export interface SshAddress {
  readonly host: string;
  readonly port: number;
}

async function fromMap(path: string, id: string): Promise<SshAddress | undefined> {
  let map: unknown;
  try {
    map = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    // Missing, or caught mid-write by a writer that does not rename: no entry yet.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || e instanceof SyntaxError) return undefined;
    throw e;
  }
  const entry = typeof map === 'object' && map !== null ? (map as Record<string, unknown>)[id] : undefined;
  if (typeof entry !== 'string') return undefined;
  const m = /^(.+):(\d{1,5})$/.exec(entry);
  if (!m) throw new DstackError('DS0238', `${ADDRESS_MAP_ENV} (${path}) maps ${id} to '${entry}', not host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

/**
 * The instance's SSH address, or undefined while it has none (no public address yet, no map entry
 * yet). `endpoint` is the custom EC2 endpoint in use, if any.
 */
export async function sshAddress(instance: InstanceInfo, env: NodeJS.ProcessEnv, endpoint: string | undefined): Promise<SshAddress | undefined> {
  const map = env[ADDRESS_MAP_ENV];
  if (map) return fromMap(map, instance.id);
  if (endpoint) {
    throw new DstackError('DS0238', `EC2 at ${endpoint} is not AWS: the address it gives ${instance.id} (${instance.publicIp ?? 'none'}) is not that instance's`, {
      hint: `dstack never connects to it; tests map instances to their containers with ${ADDRESS_MAP_ENV}=FILE`,
    });
  }
  return instance.publicIp ? { host: instance.publicIp, port: 22 } : undefined;
}
