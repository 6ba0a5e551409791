/**
 * The Docker engine of a host, spoken to through its SSH connection: every request opens a stream to
 * the host's /var/run/docker.sock (`direct-streamlocal@openssh.com`), and the same DockerClient as
 * the local backend speaks the Engine API over it. Nothing is installed on the host, and no port is
 * opened there.
 */
import { DockerClient } from '../docker/docker.js';
import { DstackError } from '../../engine/errors.js';
import type { SshConnection } from './connect.js';

export const HOST_DOCKER_SOCKET = '/var/run/docker.sock';

export function remoteDocker(connection: SshConnection, socketPath: string = HOST_DOCKER_SOCKET): DockerClient {
  return new DockerClient({
    describe: `unix://${socketPath} on ${connection.label}`,
    connect: () => connection.forwardUnixSocket(socketPath),
  });
}

/** How long bootstrap waits for the host engine's `/_ping`. */
const PING_TIMEOUT_MS = 10_000;

/**
 * Docker is present and usable on the host: `GET /_ping` through the forwarded socket. A host where
 * the socket cannot be opened (no engine, no permission) or that does not answer is DS0200, naming
 * the host.
 */
export async function pingHostDocker(client: DockerClient, connection: SshConnection, signal: AbortSignal): Promise<void> {
  const timeout = AbortSignal.timeout(PING_TIMEOUT_MS);
  try {
    await client.ping(AbortSignal.any([signal, timeout]));
  } catch (e) {
    signal.throwIfAborted();
    if (connection.closed) throw e;
    const why = timeout.aborted
      ? `no answer from ${HOST_DOCKER_SOCKET} within ${PING_TIMEOUT_MS / 1000} s`
      : e instanceof DstackError && e.code === 'DS0209'
        ? `${HOST_DOCKER_SOCKET} cannot be opened there (${e.message.replace(/^.* refused to open the socket [^:]*: /, '')})`
        : (e as Error).message;
    throw new DstackError('DS0200', `Docker is missing or unusable on ${connection.label}: ${why}`, {
      hint: `install Docker on the host and make sure ${connection.target.user} may use it (\`sudo usermod -aG docker ${connection.target.user}\`), or remove the host from the pool with \`dstack config ssh\``,
      cause: e,
    });
  }
}
