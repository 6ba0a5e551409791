/**
 * A real image registry on loopback for the tests (Debian's `docker-registry`, distribution 2.8): no
 * test may make the engine contact a registry off this machine, so pulls are tested against this
 * one. Filesystem storage in a temporary folder, optionally htpasswd auth; images built locally are
 * pushed to it with the docker CLI (its own config folder: the user's ~/.docker is never touched),
 * and removed from the engine again so a later pull really pulls. The engine treats 127.0.0.0/8 as
 * an insecure registry it may reach over plain HTTP.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

/**
 * A registry address on loopback where nothing answers: an image that is not there and cannot be
 * pulled, with the engine's attempt ending on this machine (a Docker Hub name would make it look
 * for Docker Hub).
 */
export const NOWHERE = '127.0.0.1:1';

export interface Registry {
  /** `127.0.0.1:PORT`: the prefix of image names in it. */
  readonly host: string;
  readonly port: number;
  /** Makes an image of its own layers (busybox plus `sizeBytes` of random bytes) in the registry as `host/name`; removes it from the engine. */
  pushFresh(name: string, options?: { readonly sizeBytes?: number }): Promise<string>;
  /** Pushes a local image as `host/name` (an image name without the host part); removes the tag from the engine. */
  pushTagOf(local: string, name: string): Promise<string>;
  /** Names pushed so far (full), for the sweep. */
  readonly pushed: readonly string[];
  /** Full name → the manifest digest `docker push` reported for it (the last push of that name). */
  readonly digests: ReadonlyMap<string, string>;
  /** Stops the registry, removes its storage and every pulled copy of what was pushed from the engine. */
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** A fixed port (the engine's --registry-mirror); default a free one. */
  readonly port?: number;
  /** Require these credentials (htpasswd, bcrypt). */
  readonly auth?: { readonly username: string; readonly password: string };
}

/** Says how to install what is missing, in one line a CI log shows. */
export function registryMissing(): string | undefined {
  if (spawnSync('docker-registry', ['--version']).status !== 0) return 'docker-registry is not installed: `apt-get install docker-registry` (scripts/setup.sh does)';
  if (spawnSync('htpasswd', ['-h']).error) return 'htpasswd is not installed: `apt-get install apache2-utils` (scripts/setup.sh does)';
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function docker(args: readonly string[], env?: Record<string, string>): Promise<string> {
  const r = await execa('docker', args, { reject: false, env: { ...process.env, ...env } });
  if (r.exitCode !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function answers(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/v2/`, { signal: AbortSignal.timeout(1000) });
    return res.status === 200 || res.status === 401;
  } catch {
    return false;
  }
}

export async function startRegistry(options: RegistryOptions = {}): Promise<Registry> {
  const missing = registryMissing();
  if (missing) throw new Error(missing);
  const dir = await mkdtemp(join(tmpdir(), 'dstack-registry-'));
  const port = options.port ?? (await freePort());
  if (await answers(port)) throw new Error(`something already answers on 127.0.0.1:${port}; stop it or pick another port`);
  const lines = ['version: 0.1', 'log:', '  level: error', 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'data')}`, '  delete:', '    enabled: true', 'http:', `  addr: 127.0.0.1:${port}`];
  const configDir = join(dir, 'docker-config');
  if (options.auth) {
    const h = spawnSync('htpasswd', ['-Bbn', options.auth.username, options.auth.password], { encoding: 'utf8' });
    if (h.status !== 0) throw new Error(`htpasswd failed: ${h.stderr}`);
    await writeFile(join(dir, 'htpasswd'), h.stdout);
    lines.push('auth:', '  htpasswd:', '    realm: dstack-test', `    path: ${join(dir, 'htpasswd')}`);
  }
  await writeFile(join(dir, 'config.yml'), `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => (log += d.toString('utf8')));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  for (const deadline = Date.now() + 15_000; !(await answers(port)); await new Promise((r) => setTimeout(r, 50))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not answer on 127.0.0.1:${port}:\n${log}`);
    }
  }
  const host = `127.0.0.1:${port}`;
  const env = { DOCKER_CONFIG: configDir };
  if (options.auth) await execa('docker', ['login', '-u', options.auth.username, '--password-stdin', host], { input: options.auth.password, env: { ...process.env, ...env } });
  const pushed: string[] = [];
  const digests = new Map<string, string>();

  const push = async (full: string): Promise<string> => {
    pushed.push(full);
    const out = await docker(['push', full], env);
    // "TAG: digest: sha256:… size: N", the registry's Docker-Content-Digest for the manifest pushed.
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(out)?.[1];
    if (!digest) throw new Error(`docker push ${full} reported no digest:\n${out}`);
    digests.set(full, digest);
    // Gone from the engine, so the next pull of it is a real one.
    await docker(['rmi', full]);
    return full;
  };

  return {
    host,
    port,
    pushed,
    digests,
    pushFresh: async (name, o = {}) => {
      const full = `${host}/${name}`;
      const maker = `dstack-registry-${process.pid}-${pushed.length}`;
      await docker(['run', '--name', maker, 'dstack-test/busybox:latest', 'sh', '-c', `head -c ${o.sizeBytes ?? 2_000_000} /dev/urandom > /layer.bin`]);
      try {
        await docker(['commit', maker, full]);
      } finally {
        await docker(['rm', '-f', maker]).catch(() => undefined);
      }
      return push(full);
    },
    pushTagOf: async (local, name) => {
      const full = `${host}/${name}`;
      await docker(['tag', local, full]);
      return push(full);
    },
    stop: async () => {
      for (const full of pushed) await docker(['rmi', '-f', full]).catch(() => undefined);
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The engine's registry mirrors (`--registry-mirror`), as `GET /info` reports them. */
export async function engineMirrors(): Promise<string[]> {
  const out = await docker(['info', '--format', '{{json .RegistryConfig.Mirrors}}']);
  return (JSON.parse(out) as string[] | null) ?? [];
}
