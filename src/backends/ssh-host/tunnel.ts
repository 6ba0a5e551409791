/**
 * A job's published ports, brought to the user: a listener on this machine's 127.0.0.1 (a free
 * port) whose every connection is forwarded through the SSH connection to the port the host's
 * engine published on the host's 127.0.0.1. Nothing on the host listens beyond its loopback.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { SshConnection } from './connect.js';

export interface Tunnel {
  /** The local port: what the URL shows, and (by choice) the port the app listens on in the container. */
  readonly localPort: number;
  /** Sets the host port to forward to, once the engine has published it. */
  target(hostPort: number): void;
  close(): Promise<void>;
}

export async function openTunnel(connection: SshConnection): Promise<Tunnel> {
  let hostPort: number | undefined;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (hostPort === undefined || connection.closed) return void socket.destroy();
    connection.forwardTcp(hostPort).then(
      (stream) => {
        stream.on('error', () => socket.destroy());
        socket.once('close', () => stream.destroy());
        stream.once('close', () => socket.destroy());
        socket.pipe(stream).pipe(socket);
      },
      () => socket.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref();
  const address = server.address();
  const localPort = typeof address === 'object' && address ? address.port : 0;
  return {
    localPort,
    target: (p) => (hostPort = p),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
