/**
 * A fault-injecting Docker socket proxy: a Unix socket in front of the real engine's, for
 * `DOCKER_HOST=unix://…`. It plays two faults no healthy engine produces on demand:
 *
 * - `freeze()`: the engine hangs (as a SIGSTOPped dockerd, or a proxy stopped): connections open
 *   and new ones are accepted, but nothing is read or answered, and nothing is closed.
 * - `kill()`: the engine vanishes mid-job: every connection is reset and the socket is gone.
 *
 * The real engine is untouched: containers made through the proxy keep running in it, which is
 * what a client that lost its engine must cope with.
 */
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endpointFromEnv } from '../../src/backends/docker/docker.js';

export interface DockerProxy {
  /** `unix:///tmp/…/docker.sock`, for DOCKER_HOST. */
  readonly dockerHost: string;
  /** Requests seen so far (first line of each HTTP request), for waiting on a call. */
  readonly requests: readonly string[];
  freeze(): void;
  kill(): Promise<void>;
  /** Closes it (whatever state it is in) and removes its folder. */
  close(): Promise<void>;
}

export async function startDockerProxy(): Promise<DockerProxy> {
  const upstream = endpointFromEnv().socketPath;
  if (!upstream) throw new Error('the Docker proxy needs the engine on a Unix socket (DOCKER_HOST=unix://… or the default)');
  const dir = await mkdtemp(join(tmpdir(), 'dstack-proxy-'));
  const path = join(dir, 'docker.sock');
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  let frozen = false;
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  const server: Server = createServer((client) => {
    track(client);
    if (frozen) return void client.pause();
    const engine = connect(upstream);
    track(engine);
    client.on('data', (d: Buffer) => {
      const line = d.toString('latin1').split('\r\n', 1)[0] ?? '';
      if (/^[A-Z]+ \//.test(line)) requests.push(line);
    });
    client.pipe(engine);
    engine.pipe(client);
    client.on('close', () => engine.destroy());
    engine.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  const closeServer = (): Promise<void> => new Promise((resolve) => server.close(() => resolve()));
  return {
    dockerHost: `unix://${path}`,
    requests,
    freeze() {
      frozen = true;
      // Stop both directions where they are: the kernel buffers what is sent, nobody reads it.
      for (const s of sockets) {
        s.unpipe();
        s.pause();
      }
    },
    async kill() {
      for (const s of sockets) s.destroy();
      await closeServer();
    },
    async close() {
      for (const s of sockets) s.destroy();
      if (server.listening) await closeServer();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
