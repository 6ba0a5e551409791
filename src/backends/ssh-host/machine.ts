/**
 * One job on a host of the pool, reached over SSH. The same stages as a local job, with the host's
 * filesystem and engine in place of this machine's:
 *
 * - bootstrap: the host's Docker answers through the forwarded socket, the image is there (pulled
 *   with progress otherwise), GPUs usable when asked for;
 * - stage: the code snapshot and deps' artifacts into `$HOME/.dstack/jobs/<job>` from the host's
 *   object cache, sending only the objects it lacks (transfer.ts);
 * - start/wait/stop/kill: the local backend's container logic (job-container.ts) over the host's
 *   engine; published ports come back through SSH tunnels (tunnel.ts);
 * - collect: the artifacts listed on the host, only missing objects fetched;
 * - teardown: container and job folder removed, object cache trimmed, lease released.
 *
 * Secrets reach the job only as the container's env in the create call, through the SSH channel;
 * nothing dstack writes on the host holds them.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import type { ArtifactStore, Manifest } from '../../artifacts/types.js';
import { makeManifest } from '../../artifacts/manifest.js';
import type { BackendHandle, JobContext, LogSink, Machine, RunningJob, StageInput } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import type { ArtifactSpec } from '../../engine/types.js';
import { LABEL_HOME, LABEL_JOB, LABEL_RUN, cacheMounts, createOptions } from '../docker/container.js';
import { notifyUnsaved, saveWithDeps, type DepMount } from '../docker/deps.js';
import { JobContainer, hasGpuSupport } from '../docker/job-container.js';
import { pinnedImage, registryAuthOf } from '../docker/pull.js';
import { OutsideArtifacts, insideSpecs } from '../docker/outside-artifacts.js';
import { layoutOf, type HostLayout } from './host-layout.js';
import { evictObjects, removeJobDirOnHost } from './object-cache.js';
import type { SshConnection } from './session.js';
import type { HostEngine } from './host-engine.js';
import { materializeOnHost, receiveArtifacts, sendObjects, stagePlan } from './transfer.js';
import { openTunnel, type Tunnel } from './tunnel.js';

/** Labels that tie a container to the pool and the host that runs it (reaping finds it by them). */
export const LABEL_REMOTE = 'dstack.remote';
export const LABEL_HOST = 'dstack.host';

/** Extra container labels a backend's settings ask for (tests sweep by them), without the ones dstack sets. */
export function extraLabels(raw: unknown): Record<string, string> {
  const reserved = [LABEL_HOME, LABEL_RUN, LABEL_JOB, LABEL_HOST, LABEL_REMOTE];
  const labels: Record<string, string> = {};
  if (raw && typeof raw === 'object') for (const [k, v] of Object.entries(raw)) if (typeof v === 'string' && !reserved.includes(k)) labels[k] = v;
  return labels;
}

/** What keeps a machine ours while its job runs: the pool's lease on a host, an instance's heartbeat. */
export interface Hold {
  /** Stops renewing and gives the machine up. Idempotent; never throws. */
  release(): Promise<void>;
}

export interface RemoteMachineOptions {
  /** Recorded in the handle and on the container: the remote's name. */
  readonly remote: string;
  readonly engine: HostEngine;
  /** Released last by teardown. */
  readonly hold: Hold;
  /** The CLI's dstack home: labels the container, as the local backend's do. */
  readonly home: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** The host's object cache is trimmed to this after each job. */
  readonly cacheBytes: number;
  /** How to pull a pinned image by digest on this host (`name@sha256:…`), as the backend learnt it. */
  readonly pullAs?: (digest: string) => readonly string[];
  /** Fields every handle this machine records carries besides its own (an instance's id). */
  readonly handle?: BackendHandle;
  /** Told what a job sent; tests read it. */
  readonly onSent?: (stats: { readonly bytes: number; readonly objects: number }) => void;
}

export class RemoteMachine implements Machine {
  private readonly o: RemoteMachineOptions;
  private readonly connection: SshConnection;
  private readonly container: JobContainer;
  private layout: HostLayout | undefined;
  private jobDir: string | undefined;
  private workflowDir: string | undefined;
  private depsDir: string | undefined;
  private depMounts: readonly DepMount[] = [];
  /** Objects of the host's cache hard-linked into the job's folder (see removeJobDirOnHost). */
  private linked: readonly string[] = [];
  private repoKey = 'none';
  private imageHome: string | undefined;
  /** The image id the container is created from, pinned by bootstrap. */
  private imageId: string | undefined;
  private tunnels: Tunnel[] = [];
  /** Artifacts outside /workflow, through the host engine's archive API: nothing of them is staged on the host. */
  private readonly outside = new OutsideArtifacts();
  private tornDown: Promise<void> | undefined;
  /** Bytes and objects sent to the host by stage() (0 when the host had them all). */
  sent = { bytes: 0, objects: 0 };
  /** Bytes and objects fetched by collect(). */
  received = { bytes: 0, objects: 0 };

  constructor(options: RemoteMachineOptions) {
    this.o = options;
    this.connection = options.engine.connection;
    const label = this.connection.label;
    this.container = new JobContainer({
      client: options.engine.client,
      lostReason: () => (this.connection.closed ? `lost connection to ${label}` : undefined),
    });
  }

  /** `user@host:port`. */
  get host(): string {
    return this.connection.label;
  }

  private handle(): BackendHandle {
    return { ...this.o.handle, remote: this.o.remote, host: this.connection.label, container: this.container.id ?? null, jobDir: this.jobDir ?? null };
  }

  /** Records where the job will live on the host before anything is made there (provision calls it). */
  async record(ctx: JobContext): Promise<void> {
    const layout = (this.layout ??= await layoutOf(this.connection));
    this.jobDir ??= layout.jobDir(ctx.job);
    ctx.recordHandle(this.handle());
  }

  async bootstrap(ctx: JobContext): Promise<void> {
    const { spec } = ctx;
    const gpu = spec.resources.gpu;
    const [layout] = await Promise.all([layoutOf(this.connection), this.o.engine.ensureDocker(ctx.signal)]);
    this.layout = layout;
    this.jobDir = layout.jobDir(ctx.job);
    const pin = ctx.imageDigest ? { digest: ctx.imageDigest, pullAs: this.o.pullAs?.(ctx.imageDigest) ?? [] } : undefined;
    const where = `on ${this.connection.label}`;
    const [image, info] = await Promise.all([
      pinnedImage(this.o.engine.images, spec.image, pin, { auth: registryAuthOf(spec, ctx.secrets), notify: ctx.notify, signal: ctx.signal, where }),
      gpu && gpu.count > 0 ? this.o.engine.client.info(ctx.signal) : undefined,
    ]);
    this.imageHome = image.home;
    this.imageId = image.id;
    if (info && !hasGpuSupport(info)) {
      throw new DstackError('DS0202', `the Docker engine on ${this.connection.label} has no GPU support (no nvidia runtime)`, {
        hint: 'install the NVIDIA driver and Container Toolkit on that host (`nvidia-ctk runtime configure --runtime=docker`, then restart dockerd), or run on a pool of GPU machines',
      });
    }
  }

  async stage(ctx: JobContext, input: StageInput): Promise<void> {
    const layout = (this.layout ??= await layoutOf(this.connection));
    const jobDir = (this.jobDir ??= layout.jobDir(ctx.job));
    this.repoKey = createHash('sha256').update(input.repoRoot).digest('hex').slice(0, 16);
    // Recorded before anything is written, so a crash mid-transfer still leaves something to reap.
    ctx.recordHandle(this.handle());
    const plan = stagePlan(layout, {
      jobDir,
      snapshot: input.snapshot,
      deps: this.outside.stage(input.deps, input.store),
      cacheDirs: cacheMounts(ctx.spec.cache, this.imageHome).map((m) => posix.join(this.cacheDir(layout, ctx), m.source)),
      artifacts: ctx.spec.artifacts,
    });
    const sent = await sendObjects(this.connection, layout, input.store, plan.objects, ctx.signal);
    this.sent = { bytes: sent.bytes, objects: sent.objects };
    this.o.onSent?.(this.sent);
    ctx.notify({ kind: 'info', message: `sent ${sent.bytes} bytes (${sent.objects} ${sent.objects === 1 ? 'object' : 'objects'}) to ${this.connection.label}` });
    await materializeOnHost(this.connection, plan);
    this.workflowDir = plan.workflowDir;
    this.depsDir = plan.depsDir;
    this.depMounts = plan.mounts;
    this.linked = plan.linked;
  }

  private cacheDir(layout: HostLayout, ctx: JobContext): string {
    return posix.join(layout.cache, this.repoKey, ctx.spec.workflow.replace(/[/\\]/g, '_'));
  }

  async start(ctx: JobContext, env: Readonly<Record<string, string>>, logs: LogSink): Promise<RunningJob> {
    const { spec } = ctx;
    const layout = this.layout;
    if (!layout || !this.workflowDir || !this.depsDir) throw new Error('RemoteMachine.start before stage');
    // The app listens on the local listener's port number inside the container too, so PORT_i and
    // the printed URL agree; the host side is whatever free port the host's engine picks.
    this.tunnels = await Promise.all(Array.from({ length: spec.ports }, () => openTunnel(this.connection)));
    const ports = this.tunnels.map((t) => t.localPort);
    const depsDir = this.depsDir;
    const create = createOptions({
      spec,
      ...(this.imageId ? { image: this.imageId } : {}),
      labels: {
        ...this.o.labels,
        [LABEL_RUN]: ctx.run,
        [LABEL_JOB]: ctx.job,
        [LABEL_HOME]: this.o.home,
        [LABEL_REMOTE]: this.o.remote,
        [LABEL_HOST]: this.connection.label,
      },
      workflowDir: this.workflowDir,
      cacheDir: this.cacheDir(layout, ctx),
      env,
      ports,
      home: this.imageHome,
      depMounts: this.depMounts.map((m) => ({ source: posix.join(depsDir, m.path), path: m.path })),
      hostPorts: 'any',
    });
    const job = await this.container.start({
      ctx,
      create,
      logs,
      where: `on ${this.connection.label}`,
      onCreated: () => ctx.recordHandle(this.handle()),
      beforeStart: this.outside.beforeStart(ctx, this.o.engine.client, this.imageHome),
    });
    if (this.tunnels.length > 0) {
      const info = await this.o.engine.client.inspectContainer(this.container.id!);
      for (const t of this.tunnels) {
        const bound = info.NetworkSettings?.Ports?.[`${t.localPort}/tcp`]?.[0]?.HostPort;
        if (bound) t.target(Number(bound));
        ctx.notify({ kind: 'port', containerPort: t.localPort, url: `http://127.0.0.1:${t.localPort}` });
      }
    }
    for (const a of spec.artifacts) {
      if (a.mount) ctx.notify({ kind: 'info', message: `artifact ./${a.path} is live on ${this.connection.label} at ${a.path ? posix.join(this.workflowDir, a.path) : this.workflowDir}` });
    }
    return job;
  }

  /** As the local backend's: what is there is saved, what is not is reported missing. */
  async collect(ctx: JobContext, all: readonly ArtifactSpec[], store: ArtifactStore): Promise<Manifest> {
    const workflowDir = this.workflowDir;
    const depsDir = this.depsDir;
    const layout = this.layout;
    const outside = this.connection.closed
      ? []
      : await this.outside.collect({ ctx, client: this.o.engine.client, container: this.container.id, specs: all, home: this.imageHome, store });
    const artifacts = insideSpecs(all);
    if (!workflowDir || !depsDir || !layout) {
      for (const a of artifacts) ctx.notify({ kind: 'info', message: `artifact '${a.path}' was not found in /workflow` });
      return makeManifest(outside);
    }
    const { manifest, missing, skipped } = await saveWithDeps({
      artifacts,
      depPaths: this.depMounts.map((m) => m.path),
      save: (from, specs) => receiveArtifacts(this.connection, layout, from === 'workflow' ? workflowDir : depsDir, specs, store, this.received),
    });
    notifyUnsaved(ctx, missing, skipped);
    return outside.length ? makeManifest([...manifest.entries, ...outside]) : manifest;
  }

  teardown(): Promise<void> {
    this.tornDown ??= this.removeAll();
    return this.tornDown;
  }

  /**
   * Teardown for a host that goes with the job (an instance being terminated): only what this
   * process holds is let go — tunnels, streams, the hold —, without the round trips of removing
   * what the host holds.
   */
  letGo(): Promise<void> {
    this.tornDown ??= (async () => {
      await Promise.all(this.tunnels.map((t) => t.close()));
      this.container.destroyStreams();
      await this.o.hold.release();
    })();
    return this.tornDown;
  }

  private async removeAll(): Promise<void> {
    await Promise.all(this.tunnels.map((t) => t.close()));
    const errors: unknown[] = [];
    if (!this.connection.closed) {
      // The container first: while it runs it may still be writing into the folder.
      await this.container.remove().catch((e: unknown) => errors.push(e));
      if (this.jobDir && this.layout) {
        await removeJobDirOnHost(this.connection, this.layout, this.jobDir, this.linked).catch((e: unknown) => errors.push(e));
      }
      if (this.layout && errors.length === 0) await evictObjects(this.connection, this.layout, this.o.cacheBytes).catch(() => undefined);
    } else {
      this.container.destroyStreams();
    }
    // A lease whose connection is gone expires on the host; the next taker reaps what is left.
    await this.o.hold.release();
    if (errors.length) throw errors[0];
  }
}
