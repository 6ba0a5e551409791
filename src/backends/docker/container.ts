/**
 * What the job's container looks like: a pure function of the job, so it can be read (and tested)
 * without an engine.
 */
import { createServer } from 'node:net';
import { posix } from 'node:path';
import type { JobSpec } from '../../engine/types.js';
import type { ContainerCreateOptions } from './docker.js';

export const LABEL_RUN = 'dstack.run';
export const LABEL_JOB = 'dstack.job';
/** The dstack home that owns the container, so two homes on one engine never reap each other's. */
export const LABEL_HOME = 'dstack.home';

/** Where the job's folder is mounted in the container. */
export const WORKFLOW_DIR = '/workflow';
/** `~` in a cache path when the image sets no HOME: containers run as root. */
export const DEFAULT_HOME = '/root';

export interface CacheMount {
  /** Absolute path in the container. */
  readonly target: string;
  /** Relative to the workflow's cache folder on the host. */
  readonly source: string;
}

/**
 * `~/.cache/pip` → /root/.cache/pip, `/data` stays, `data` → /workflow/data. On the host each is one
 * folder directly in the workflow's cache folder, named by the container path with `/` as `%2F`
 * (`root%2F.cache%2Fpip`): never one inside another, so no job can write into a folder on the way to
 * another entry's (it would plant a symlink there for the next run to bind: issue 7 §1).
 */
export function cacheMounts(cache: readonly string[], home: string = DEFAULT_HOME): CacheMount[] {
  const out = new Map<string, CacheMount>();
  for (const raw of cache) {
    const p = raw.trim();
    if (!p) continue;
    const abs = isHomePath(p) ? home + p.slice(1) : p.startsWith('/') ? p : `${WORKFLOW_DIR}/${p}`;
    const target = posix.normalize(abs).replace(/\/+$/, '');
    if (target === '' || target === '/' || target === WORKFLOW_DIR) continue;
    out.set(target, { target, source: target.slice(1).replace(/%/g, '%25').replace(/\//g, '%2F') });
  }
  return [...out.values()];
}

const isHomePath = (p: string): boolean => p === '~' || p.startsWith('~/');

export interface ContainerPlan {
  readonly spec: JobSpec;
  /** The image id to create the container from (the pinned one, see `pinnedImage`); default `spec.image`. */
  readonly image?: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Host folder mounted at /workflow. */
  readonly workflowDir: string;
  /** Host folder holding this workflow's caches; only read when the spec has `cache:` entries. */
  readonly cacheDir: string;
  readonly env: Readonly<Record<string, string>>;
  /** Port numbers, the same inside and out: PORT_i is what the app listens on and what the URL shows. */
  readonly ports: readonly number[];
  /** `~` in the container: the image's HOME, else /root. */
  readonly home?: string;
  /** Deps' artifacts: host paths mounted read-only at `/workflow/<path>` (see deps.ts). */
  readonly depMounts?: readonly { readonly source: string; readonly path: string }[];
  /**
   * `same` (default): each port is published on the same port of the host's 127.0.0.1. `any`: on a
   * port the engine picks (a remote host, whose free ports we cannot know; the URL is a tunnel's).
   */
  readonly hostPorts?: 'same' | 'any';
}

export function createOptions(plan: ContainerPlan): ContainerCreateOptions {
  const { spec } = plan;
  const env = { ...plan.env };
  plan.ports.forEach((p, i) => (env[`PORT_${i}`] = String(p)));
  // The init (the engine's docker-init, tini) sends a stop's SIGTERM to the job's whole process group,
  // as Ctrl-C on a terminal would: the shell, and the program it waits for, which can then save.
  env.TINI_KILL_PROCESS_GROUP ??= '1';
  const home = plan.home ?? DEFAULT_HOME;
  // Docker sets HOME from /etc/passwd, or `/` when the image has none; `~` in the commands must
  // mean the folder the `~/…` caches are mounted under.
  if (spec.cache.some((c) => isHomePath(c.trim())) && env.HOME === undefined) env.HOME = home;
  const binds = [`${plan.workflowDir}:${WORKFLOW_DIR}`];
  for (const m of cacheMounts(spec.cache, home)) binds.push(`${posix.join(plan.cacheDir, m.source)}:${m.target}`);
  // `Mounts`, not `Binds`: an artifact path may hold a `:`, which the `src:dst:ro` form can't carry.
  // The engine mounts by depth, so these land on top of the /workflow bind whatever their order.
  const mounts = (plan.depMounts ?? []).map((m) => ({
    Type: 'bind' as const,
    Source: m.source,
    Target: posix.join(WORKFLOW_DIR, m.path),
    ReadOnly: true,
  }));
  const exposed: Record<string, Record<string, never>> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of plan.ports) {
    exposed[`${p}/tcp`] = {};
    bindings[`${p}/tcp`] = [{ HostIp: '127.0.0.1', HostPort: plan.hostPorts === 'any' ? '' : String(p) }];
  }
  const { cpu, memory, shmSize, gpu } = spec.resources;
  return {
    Image: plan.image ?? spec.image,
    ...(spec.command ? { Cmd: [...spec.command] } : {}),
    ...(spec.entrypoint ? { Entrypoint: [...spec.entrypoint] } : {}),
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    WorkingDir: spec.workingDir ? posix.join(WORKFLOW_DIR, spec.workingDir) : WORKFLOW_DIR,
    Labels: { ...plan.labels },
    Tty: false,
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: false,
    ...(plan.ports.length ? { ExposedPorts: exposed } : {}),
    HostConfig: {
      // A shell as PID 1 has no default action for SIGTERM, so the kernel drops the signal and every
      // stop waited the whole grace period for SIGKILL (exit 137, artifacts of a dying job lost).
      Init: true,
      Binds: binds,
      ...(mounts.length ? { Mounts: mounts } : {}),
      ...(memory ? { Memory: Math.round(memory) } : {}),
      ...(cpu ? { NanoCpus: Math.round(cpu * 1e9) } : {}),
      ...(shmSize ? { ShmSize: Math.round(shmSize) } : {}),
      ...(gpu && gpu.count > 0 ? { DeviceRequests: [{ Driver: '', Count: gpu.count, Capabilities: [['gpu']] }] } : {}),
      ...(plan.ports.length ? { PortBindings: bindings } : {}),
    },
  };
}

/**
 * Free TCP ports on 127.0.0.1, asked of the kernel all at once (held together so they differ).
 * Another process may take one before the container starts; start then fails with DS0204.
 */
export async function freePorts(n: number): Promise<number[]> {
  if (n <= 0) return [];
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<import('node:net').Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a ? a.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}
