/**
 * A host's Docker engine as one SSH connection reaches it, made once per connection and shared by
 * the jobs on it (the pool's hosts, an instance): the client, the images it holds (one inspect or
 * pull per image), whether Docker answers. And what a recorded handle needs from a host later: is
 * the job's container there, and removing it with the job's folder.
 */
import type { BackendHandle, ObservedState } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import type { DockerClient } from '../docker/docker.js';
import { observeContainer } from '../docker/job-container.js';
import { ImageCache } from '../docker/pull.js';
import { pingHostDocker, remoteDocker } from './docker-remote.js';
import { isJobDir, layoutOf } from './host-layout.js';
import type { SshConnection } from './session.js';
import { shellQuote } from './shell.js';

/** The host's engine, as one connection reaches it; shared by the jobs on that connection. */
export interface HostEngine {
  readonly connection: SshConnection;
  readonly client: DockerClient;
  readonly images: ImageCache;
  /** Docker answered `/_ping` on this connection (asked once; a failure is asked again). */
  ensureDocker(signal: AbortSignal): Promise<void>;
}

const engines = new WeakMap<SshConnection, HostEngine>();

export function hostEngine(connection: SshConnection): HostEngine {
  let e = engines.get(connection);
  if (!e) {
    const client: DockerClient = remoteDocker(connection);
    let pinged: Promise<void> | undefined;
    e = {
      connection,
      client,
      images: new ImageCache(() => client),
      ensureDocker: (signal) => {
        if (!pinged) {
          const p = pingHostDocker(client, connection, signal);
          p.catch(() => (pinged = undefined));
          pinged = p;
        }
        return pinged;
      },
    };
    engines.set(connection, e);
    connection.onClose(() => client.close());
  }
  return e;
}

/** What the host holds for a recorded handle's container; `gone` when it does not answer. */
export async function observeOnHost(connection: SshConnection, handle: BackendHandle): Promise<ObservedState> {
  const id = handle.container;
  if (typeof id !== 'string' || !id) return { state: 'gone' };
  try {
    return await observeContainer(hostEngine(connection).client, id);
  } catch {
    return { state: 'gone' };
  }
}

/** Removes a recorded handle's container, then its job folder (never anything outside the jobs folder). Idempotent. */
export async function reapOnHost(connection: SshConnection, handle: BackendHandle): Promise<void> {
  const id = handle.container;
  if (typeof id === 'string' && id) await hostEngine(connection).client.removeContainer(id);
  if (typeof handle.jobDir === 'string') await removeJobDir(connection, handle.jobDir);
}

/** `rm -rf` of a job folder on the host, refused for anything that is not one (a corrupt handle). */
export async function removeJobDir(connection: SshConnection, dir: string): Promise<void> {
  const layout = await layoutOf(connection);
  if (!isJobDir(layout, dir)) return;
  const r = await connection.exec(`rm -rf -- ${shellQuote(dir)}`);
  if (r.code !== 0) throw new DstackError('DS0209', `could not remove ${dir} on ${connection.label}: ${r.stderr.toString('utf8').trim()}`);
}
