/**
 * Real OpenSSH servers for the tests: containers of `dstack-test/sshhost:latest` (built locally by
 * `scripts/build-images.sh sshhost`), each with its own sshd and host key, listening on its own
 * loopback port. A host is reachable over SSH about a second after `startHost` begins.
 *
 * Where a host's jobs run: a test host has no Docker engine of its own. A host started with
 * `docker: true` gets this machine's engine socket at /var/run/docker.sock, so the job containers it
 * starts are siblings on this machine's engine; `docker: false` gets no socket (the "host without
 * Docker"). root's home is a folder of this machine, `/tmp/dstack-hosts/<name>/root`, mounted at the
 * SAME path inside the container (the image's entrypoint points root's passwd entry at HOST_HOME):
 * a job folder made over SSH under the home has one path for the host and for the engine, so the
 * engine resolves its bind mounts. A backend must therefore keep job folders under the login home;
 * anything else in the host's filesystem exists only inside the container.
 *
 * Network: a host runs in the network namespace of this machine (`--network host`), its sshd on a
 * free port of 127.0.0.1 of its own — the namespace of the Docker engine, so a port that a job
 * container publishes on the "host's" 127.0.0.1 is one that sshd can forward to (the pool's port
 * tunnels), as on a real machine where sshd and dockerd share the network. Machine death
 * (`killHost`) kills the job containers the host started too (found by the `dstack.host` label the
 * pool puts on them): they are siblings on this machine's engine, and would otherwise outlive it.
 *
 * The client's key pair is made once per test process (ed25519, mode 0600). Every host carries the
 * labels `dstack.test=ssh-host` and `dstack.test.pid=<this process>`, for the sweep at the end of a
 * file; `removeHost` in a `finally` removes the container and its folder.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { endpointFromEnv } from '../../src/backends/docker/docker.js';
import { fingerprint } from '../../src/backends/ssh-host/known-hosts.js';

export const SSH_HOST_IMAGE = 'dstack-test/sshhost:latest';
export const HOSTS_ROOT = '/tmp/dstack-hosts';
const LABEL = 'dstack.test=ssh-host';
const PID_LABEL = `dstack.test.pid=${process.pid}`;

const run = promisify(execFile);

export async function docker(...args: string[]): Promise<string> {
  try {
    return (await run('docker', args, { maxBuffer: 16 * 1024 * 1024 })).stdout.trim();
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`docker ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

export interface KeyPair {
  /** The private key file, mode 0600. */
  readonly path: string;
  /** `ssh-ed25519 AAAA… comment`. */
  readonly publicKey: string;
  /** `SHA256:…`. */
  readonly fingerprint: string;
}

let scratch: string | undefined;
async function scratchDir(): Promise<string> {
  if (!scratch) {
    const dir = await mkdtemp(join(tmpdir(), 'dstack-ssh-keys-'));
    scratch = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return scratch;
}

/** A new ed25519 key pair (`ssh-keygen`), in this process's scratch folder unless `dir` is given. */
export async function generateKeyPair(name: string, dir?: string): Promise<KeyPair> {
  const folder = dir ?? (await scratchDir());
  const path = join(folder, name);
  await rm(path, { force: true });
  await rm(`${path}.pub`, { force: true });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `dstack-test-${name}`, '-f', path]);
  await chmod(path, 0o600);
  const publicKey = (await readFile(`${path}.pub`, 'utf8')).trim();
  return { path, publicKey, fingerprint: fingerprint(Buffer.from(publicKey.split(/\s+/)[1] ?? '', 'base64')) };
}

let client: Promise<KeyPair> | undefined;
/** The client key every test host authorizes; made once per process. */
export const clientKey = (): Promise<KeyPair> => (client ??= generateKeyPair('client_ed25519'));

export interface TestHost {
  /** Container name, also the host's folder under /tmp/dstack-hosts. */
  readonly name: string;
  readonly container: string;
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly user: 'root';
  /** The client's private key that the host authorizes. */
  readonly keyPath: string;
  /** root's home, the same path on this machine and inside the host. */
  readonly home: string;
  readonly docker: boolean;
  readonly hostKey: KeyPair;
}

export interface StartHostOptions {
  /** Mount this machine's Docker socket (default true). */
  readonly docker?: boolean;
  /** A host key (private key file) to use; default: a new one. */
  readonly hostKey?: KeyPair;
  /** Authorize this public key instead of the process's client key. */
  readonly authorizedKey?: string;
  /**
   * A boot script run as root before sshd starts, as a cloud runs an instance's user-data (the fake
   * cloud's instances): it installs its own host key (`hostKey` is then not used). `shutdown`
   * inside the host ends it, as on an instance that terminates on shutdown.
   */
  readonly bootScript?: string;
  /** The container's name (default `dstack-sshhost-<pid>-<n>`); its folder is /tmp/dstack-hosts/<name>. */
  readonly name?: string;
  /** Extra `key=value` labels on the host's container. */
  readonly labels?: readonly string[];
  /** Wait until sshd answers (default true); false returns once the container is created. */
  readonly wait?: boolean;
  /** The loopback port for sshd (default: a free one). */
  readonly port?: number;
}

let counter = 0;

async function ensureImage(): Promise<void> {
  try {
    await docker('image', 'inspect', '-f', '{{.Id}}', SSH_HOST_IMAGE);
  } catch {
    throw new Error(`image ${SSH_HOST_IMAGE} is missing: run \`scripts/build-images.sh sshhost\``);
  }
}

function engineSocket(): string {
  const endpoint = endpointFromEnv();
  if (!endpoint.socketPath) throw new Error(`SSH test hosts need a Docker engine on a Unix socket, not ${endpoint.describe}`);
  return endpoint.socketPath;
}

/** Resolves once sshd itself answers with its banner (docker-proxy accepts connections before that). */
export async function waitForSsh(port: number, name: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const banner = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => finish(false), 1000);
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        s.destroy();
        resolve(ok);
      };
      s.once('data', (d: Buffer) => finish(d.toString('latin1').startsWith('SSH-')));
      s.once('error', () => finish(false));
      s.once('close', () => finish(false));
    });
    if (banner) return;
    if (Date.now() > deadline) {
      const logs = await docker('logs', '--tail', '20', name).catch((e: Error) => e.message);
      throw new Error(`SSH test host ${name} did not answer on 127.0.0.1:${port} within ${ms} ms\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A port of 127.0.0.1 nobody listens on now (the kernel's pick; another process could take it before sshd does). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** sshd on its own port of 127.0.0.1 in this machine's network namespace, then the image's entrypoint. */
const ENTRY = 'sed -i "s/^Port 22$/Port $SSH_PORT\\nListenAddress 127.0.0.1/" /etc/ssh/sshd_config && exec /usr/local/sbin/dstack-sshhost';

interface ContainerPlan {
  readonly name: string;
  readonly dir: string;
  readonly home: string;
  readonly withDocker: boolean;
  readonly hostKey?: KeyPair;
  readonly authorizedKey: string;
  readonly port: number;
  readonly bootScript?: string;
  readonly labels?: readonly string[];
}

/** The boot script and a `shutdown` that ends the host (sshd is its pid 1), for a host that plays an instance. */
async function bootFiles(dir: string, script: string): Promise<string[]> {
  const boot = join(dir, 'boot');
  await mkdir(boot, { recursive: true, mode: 0o700 });
  await writeFile(join(boot, 'boot.sh'), script, { mode: 0o700 });
  await writeFile(join(boot, 'shutdown'), '#!/bin/sh\nkill -TERM 1\n', { mode: 0o755 });
  return ['-v', `${boot}:/run/dstack-boot:ro`, '-v', `${join(boot, 'shutdown')}:/usr/local/sbin/shutdown:ro`];
}

async function runContainer(p: ContainerPlan): Promise<{ container: string; port: number }> {
  const { name, dir, home, port } = p;
  const keyArgs: string[] = [];
  if (p.hostKey) {
    const keyDir = join(dir, 'hostkey');
    await mkdir(keyDir, { recursive: true, mode: 0o700 });
    await copyFile(p.hostKey.path, join(keyDir, 'ssh_host_ed25519_key'));
    await chmod(join(keyDir, 'ssh_host_ed25519_key'), 0o600);
    keyArgs.push('-e', 'HOST_KEY_FILE=/run/dstack-hostkey/ssh_host_ed25519_key', '-v', `${keyDir}:/run/dstack-hostkey:ro`);
  }
  const boot = p.bootScript === undefined ? [] : await bootFiles(dir, p.bootScript);
  const args = [
    'run', '-d', '--name', name,
    '--label', LABEL, '--label', PID_LABEL, ...(p.labels ?? []).flatMap((l) => ['--label', l]),
    '--network', 'host',
    '-e', `SSH_PORT=${port}`,
    '-e', `AUTHORIZED_KEY=${p.authorizedKey}`,
    '-e', `HOST_HOME=${home}`,
    ...keyArgs,
    ...boot,
    '-v', `${home}:${home}`,
    ...(p.withDocker ? ['-v', `${engineSocket()}:/var/run/docker.sock`] : []),
    '--entrypoint', '/bin/sh',
    SSH_HOST_IMAGE,
    '-c', p.bootScript === undefined ? ENTRY : `sh /run/dstack-boot/boot.sh; ${ENTRY}`,
  ];
  const container = await docker(...args);
  return { container, port };
}

let reaped: Promise<void> | undefined;
/** Hosts left by test processes that died before their `finally` (a crash, a kill -9). */
async function reapOrphans(): Promise<void> {
  const out = await docker('ps', '-a', '--filter', `label=${LABEL}`, '--format', '{{.ID}} {{.Names}} {{.Label "dstack.test.pid"}}');
  for (const [id, name, pid] of out.split('\n').filter(Boolean).map((l) => l.split(' '))) {
    let alive = true;
    try {
      process.kill(Number(pid), 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code !== 'ESRCH';
    }
    if (alive || !id || !name) continue;
    await docker('rm', '-f', '-v', id).catch(() => undefined);
    await rm(join(HOSTS_ROOT, name), { recursive: true, force: true });
  }
}

/** Starts a host and waits until SSH answers. Remove it with `removeHost` in a `finally`. */
export async function startHost(options: StartHostOptions = {}): Promise<TestHost> {
  await ensureImage();
  await (reaped ??= reapOrphans());
  const withDocker = options.docker ?? true;
  const key = await clientKey();
  const name = options.name ?? `dstack-sshhost-${process.pid}-${++counter}`;
  const dir = join(HOSTS_ROOT, name);
  const home = join(dir, 'root');
  await mkdir(home, { recursive: true, mode: 0o700 });
  const hostKey = options.hostKey ?? (await generateKeyPair(`${name}_host`));
  const { container, port } = await runContainer({
    name,
    dir,
    home,
    withDocker,
    ...(options.bootScript === undefined ? { hostKey } : { bootScript: options.bootScript }),
    authorizedKey: options.authorizedKey ?? key.publicKey,
    port: options.port ?? (await freePort()),
    ...(options.labels ? { labels: options.labels } : {}),
  });
  const host: TestHost = { name, container, host: '127.0.0.1', port, user: 'root', keyPath: key.path, home, docker: withDocker, hostKey };
  if (options.wait === false) return host;
  try {
    await waitForSsh(port, name);
  } catch (e) {
    await removeHost(host);
    throw e;
  }
  return host;
}

/**
 * SIGKILLs the host's container (a machine that dies), and the job containers it ran (label
 * `dstack.host=root@127.0.0.1:PORT`): on a real machine they die with it. The containers stay until
 * `removeHost` (the host's) or a reap (the jobs').
 */
export async function killHost(h: TestHost): Promise<void> {
  await docker('kill', h.container).catch(() => undefined);
  const jobs = await docker('ps', '-q', '--filter', `label=dstack.host=${h.user}@${h.host}:${h.port}`).catch(() => '');
  const ids = jobs.split('\n').filter(Boolean);
  if (ids.length) await docker('kill', ...ids).catch(() => undefined);
}

/** The same machine back after a crash: a new container with the SAME host key, port and home. */
export async function restartHost(h: TestHost): Promise<TestHost> {
  await docker('rm', '-f', h.container).catch(() => undefined);
  const key = await clientKey();
  const { container } = await runContainer({ name: h.name, dir: join(HOSTS_ROOT, h.name), home: h.home, withDocker: h.docker, hostKey: h.hostKey, authorizedKey: key.publicKey, port: h.port });
  await waitForSsh(h.port, h.name);
  return { ...h, container };
}

/**
 * The same machine reinstalled: a new container with a NEW host key on the SAME port, same home.
 * Returns the new host (its `container` and `hostKey` differ).
 */
export async function restartWithNewHostKey(h: TestHost): Promise<TestHost> {
  await docker('rm', '-f', h.container);
  const hostKey = await generateKeyPair(`${h.name}_host`);
  const key = await clientKey();
  const { container } = await runContainer({ name: h.name, dir: join(HOSTS_ROOT, h.name), home: h.home, withDocker: h.docker, hostKey, authorizedKey: key.publicKey, port: h.port });
  await waitForSsh(h.port, h.name);
  return { ...h, container, hostKey };
}

/** Removes the container and the host's folder. Idempotent. */
export async function removeHost(h: Pick<TestHost, 'name' | 'container'>): Promise<void> {
  await docker('rm', '-f', '-v', h.container).catch(() => undefined);
  await docker('rm', '-f', '-v', h.name).catch(() => undefined);
  await rm(join(HOSTS_ROOT, h.name), { recursive: true, force: true });
}

/**
 * Removes the host containers of this process (or, with `everyProcess`, every test host) and
 * returns how many there were: a leak when > 0 at the end of a file.
 */
export async function sweepHosts(everyProcess = false): Promise<number> {
  const filters = ['--filter', `label=${LABEL}`, ...(everyProcess ? [] : ['--filter', `label=${PID_LABEL}`])];
  const out = await docker('ps', '-a', '--no-trunc', ...filters, '--format', '{{.ID}} {{.Names}}');
  const found = out.split('\n').filter(Boolean).map((l) => l.split(' ') as [string, string]);
  for (const [id, name] of found) {
    await docker('rm', '-f', '-v', id).catch(() => undefined);
    await rm(join(HOSTS_ROOT, name), { recursive: true, force: true });
  }
  return found.length;
}
