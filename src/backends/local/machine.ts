/**
 * One job in a local container. The job's folder `${home}/jobs/<job>/workflow` is bind-mounted at
 * /workflow; containers run as root, so what the job writes there is root-owned on the host (fine
 * when the CLI runs as the engine's user, which is the supported setup). Being on the host already,
 * it is also where `mount: true` artifacts can be watched while the job runs.
 *
 * Deps' artifacts are not copied: they are hard links to the store's objects under
 * `${home}/jobs/<job>/deps`, each top-level artifact path bind-mounted READ-ONLY at
 * `/workflow/<path>` (deps.ts). So a job cannot write into its deps' artifact paths — not modify,
 * not delete, not add a file under them; it must write elsewhere (`cp -r data data2`) — which is the
 * price of not copying: root in the container ignores the objects' 0444, and only the read-only
 * mount keeps a job from writing through a link into the store.
 *
 * Round trips on the hot path: image inspect (bootstrap, or `imageDigest` before it: shared per
 * backend), create, attach ‖ wait (in parallel, both acknowledged by the engine before start),
 * start, then remove in teardown — the same calls `docker run --rm` makes. Inspect only when an
 * exit code of 137 needs explaining.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { makeManifest } from '../../artifacts/manifest.js';
import { materializeSnapshot } from '../../artifacts/tree.js';
import type { ArtifactStore, Manifest, ManifestEntry } from '../../artifacts/types.js';
import type { BackendHandle, ExitInfo, JobContext, LogSink, Machine, RunningJob, StageInput } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import type { ArtifactSpec } from '../../engine/types.js';
import { LABEL_HOME, LABEL_JOB, LABEL_RUN, cacheMounts, createOptions, freePorts } from './container.js';
import { stageDeps, type DepMount } from './deps.js';
import { demuxer } from './demux.js';
import { DockerApiError, isStatus, readAll, type DockerClient } from './docker.js';
import { registryAuthOf, type ImageCache } from './pull.js';

export interface LocalMachineOptions {
  readonly client: DockerClient;
  /** The backend's images, already looked up (or pulled) by `imageDigest` most of the time. */
  readonly images: ImageCache;
  readonly home: string;
  readonly ctx: JobContext;
  /** Extra labels on the container (tests use them to find what they made). */
  readonly labels?: Readonly<Record<string, string>>;
}

/** `${home}/jobs/<job id with / replaced by _>`: the folder teardown and reap remove. */
export const jobDirOf = (home: string, job: string): string => join(home, 'jobs', job.replace(/[/\\]/g, '_'));

/** Refuses to delete anything outside `${home}/jobs/`, whatever a (possibly corrupt) handle says. */
export async function removeJobDir(home: string, dir: string): Promise<void> {
  const jobs = resolve(home, 'jobs') + sep;
  const abs = resolve(dir);
  if (!abs.startsWith(jobs)) return;
  await rm(abs, { recursive: true, force: true, maxRetries: 2 });
}

export class LocalMachine implements Machine {
  private readonly client: DockerClient;
  private readonly images: ImageCache;
  private readonly home: string;
  private readonly labels: Readonly<Record<string, string>>;
  readonly jobDir: string;
  readonly workflowDir: string;
  /** The deps' merged artifacts, as hard links to the store's objects. */
  readonly depsDir: string;
  /** Set by stage(): the deps' top-level paths, mounted read-only. */
  private depMounts: readonly DepMount[] = [];
  private containerId: string | undefined;
  /** Keys the cache folder by repository; set by stage(). */
  private repoKey = 'none';
  /** The image's HOME, learnt by bootstrap. */
  private imageHome: string | undefined;
  private readonly streams = new Set<IncomingMessage>();

  constructor(options: LocalMachineOptions) {
    this.client = options.client;
    this.images = options.images;
    this.home = options.home;
    this.labels = options.labels ?? {};
    this.jobDir = jobDirOf(options.home, options.ctx.job);
    this.workflowDir = join(this.jobDir, 'workflow');
    this.depsDir = join(this.jobDir, 'deps');
  }

  private handle(): BackendHandle {
    return { container: this.containerId ?? null, jobDir: this.jobDir };
  }

  async bootstrap(ctx: JobContext): Promise<void> {
    const { spec } = ctx;
    const gpu = spec.resources.gpu;
    const [image, info] = await Promise.all([
      this.images.ensure(spec.image, { auth: registryAuthOf(spec, ctx.secrets), notify: ctx.notify, signal: ctx.signal }),
      gpu && gpu.count > 0 ? this.client.info(ctx.signal) : undefined,
    ]);
    this.imageHome = image.home;
    if (info) {
      const runtimes = Object.keys(info.Runtimes ?? {});
      const cdi = (info.CDISpecDirs ?? []).length > 0;
      if (!runtimes.includes('nvidia') && !cdi) {
        throw new DstackError('DS0202', 'this Docker engine has no GPU support (no nvidia runtime)', {
          hint: 'install the NVIDIA Container Toolkit and run `nvidia-ctk runtime configure --runtime=docker`, then restart dockerd; or run with `--remote`',
        });
      }
    }
  }

  async stage(ctx: JobContext, input: StageInput): Promise<void> {
    this.repoKey = createHash('sha256').update(input.repoRoot).digest('hex').slice(0, 16);
    // Recorded before anything is written, so a crash mid-copy still leaves something to reap.
    ctx.recordHandle(this.handle());
    await rm(this.workflowDir, { recursive: true, force: true });
    await materializeSnapshot(input.store, input.snapshot, this.workflowDir);
    const staged = await stageDeps({ deps: input.deps, store: input.store, depsDir: this.depsDir, workflowDir: this.workflowDir });
    this.depMounts = staged.mounts;
  }

  async start(ctx: JobContext, env: Readonly<Record<string, string>>, logs: LogSink): Promise<RunningJob> {
    const { spec } = ctx;
    const cacheDir = join(this.home, 'cache', this.repoKey, spec.workflow.replace(/[/\\]/g, '_'));
    const [ports] = await Promise.all([
      freePorts(spec.ports),
      mkdir(this.workflowDir, { recursive: true }),
      ...cacheMounts(spec.cache, this.imageHome).map((m) => mkdir(join(cacheDir, m.source), { recursive: true })),
    ]);
    const options = createOptions({
      spec,
      labels: { ...this.labels, [LABEL_RUN]: ctx.run, [LABEL_JOB]: ctx.job, [LABEL_HOME]: this.home },
      workflowDir: this.workflowDir,
      cacheDir,
      env,
      ports,
      home: this.imageHome,
      depMounts: this.depMounts.map((m) => ({ source: join(this.depsDir, m.path), path: m.path })),
    });

    ctx.signal.throwIfAborted();
    let id: string;
    try {
      // No abort signal here: an aborted create may still make a container whose id we'd never learn.
      id = (await this.client.createContainer(options)).Id;
    } catch (e) {
      throw createError(e, spec.image, ctx.job);
    }
    this.containerId = id;
    ctx.recordHandle(this.handle());
    ctx.signal.throwIfAborted();

    // Both must be in place before start: a wait registered afterwards could miss a fast exit, and
    // attach would miss the first output. The engine answers each with headers once it holds them.
    const opened = await Promise.allSettled([
      this.client.open('POST', `/containers/${id}/attach`, { query: { stream: true, stdout: true, stderr: true } }),
      this.client.open('POST', `/containers/${id}/wait`, { query: { condition: 'next-exit' } }),
    ]);
    for (const r of opened) if (r.status === 'fulfilled') this.streams.add(r.value);
    const [attached, waiting] = opened;
    if (attached?.status !== 'fulfilled' || waiting?.status !== 'fulfilled') {
      this.destroyStreams();
      const failed = opened.find((r) => r.status === 'rejected');
      throw createError(failed?.status === 'rejected' ? failed.reason : undefined, spec.image, ctx.job);
    }
    const logsDone = new Promise<void>((done) => {
      const push = demuxer(logs);
      attached.value.on('data', push);
      attached.value.on('end', done);
      attached.value.on('close', done);
      attached.value.on('error', () => done());
    });
    const waitBody = readAll(waiting.value);
    waitBody.catch(() => undefined);

    try {
      await this.client.call('POST', `/containers/${id}/start`);
    } catch (e) {
      this.destroyStreams();
      throw startError(e, ctx.job, ports);
    }
    for (const p of ports) ctx.notify({ kind: 'port', containerPort: p, url: `http://127.0.0.1:${p}` });
    for (const a of spec.artifacts) {
      if (a.mount) ctx.notify({ kind: 'info', message: `artifact ./${a.path} is live at ${a.path ? join(this.workflowDir, a.path) : this.workflowDir}` });
    }
    return new LocalRunningJob({ client: this.client, id, ctx, waitBody, logsDone, onEnd: () => this.destroyStreams() });
  }

  /**
   * Also after a failed job, or one that never started: what is there is saved, what is not is
   * reported missing. A path the deps provided (read-only, so unchanged) is read from the deps'
   * folder, not from its empty mount point in /workflow.
   */
  async collect(ctx: JobContext, artifacts: readonly ArtifactSpec[], store: ArtifactStore): Promise<Manifest> {
    if (!existsSync(this.workflowDir)) {
      for (const a of artifacts) ctx.notify({ kind: 'info', message: `artifact '${a.path}' was not found in /workflow` });
      return makeManifest([]);
    }
    const under = (path: string, root: string): boolean => root === '' || path === root || path.startsWith(`${root}/`);
    const mounted = this.depMounts.map((m) => m.path);
    // Dep paths an artifact covers, and artifacts that lie inside a dep path.
    const fromDeps = new Set<string>();
    for (const m of mounted) if (artifacts.some((a) => under(m, a.path))) fromDeps.add(m);
    for (const a of artifacts) if (mounted.some((m) => a.path !== m && under(a.path, m))) fromDeps.add(a.path);
    const [own, deps] = await Promise.all([
      store.save(this.workflowDir, artifacts),
      fromDeps.size ? store.save(this.depsDir, [...fromDeps].map((path) => ({ path, mount: false }))) : undefined,
    ]);
    let manifest = own.manifest;
    let missing = own.missing;
    if (deps) {
      const entries = new Map<string, ManifestEntry>();
      for (const e of own.manifest.entries) if (!mounted.some((m) => under(e.path, m))) entries.set(e.path, e);
      for (const e of deps.manifest.entries) entries.set(e.path, e);
      manifest = makeManifest(entries.values());
      missing = own.missing.filter((p) => !fromDeps.has(p) || deps.missing.includes(p));
    }
    for (const path of missing) ctx.notify({ kind: 'info', message: `artifact '${path}' was not found in /workflow` });
    return manifest;
  }

  async teardown(): Promise<void> {
    this.destroyStreams();
    // The container first: while it runs it may still be writing into the folder.
    if (this.containerId) await this.client.removeContainer(this.containerId);
    await removeJobDir(this.home, this.jobDir);
  }

  private destroyStreams(): void {
    for (const s of this.streams) s.destroy();
    this.streams.clear();
  }
}

interface RunningOptions {
  readonly client: DockerClient;
  readonly id: string;
  readonly ctx: JobContext;
  readonly waitBody: Promise<Buffer>;
  readonly logsDone: Promise<void>;
  readonly onEnd: () => void;
}

/** How long the last log lines may trail the exit before wait() resolves without them. */
const LOG_DRAIN_MS = 2000;

class LocalRunningJob implements RunningJob {
  private readonly o: RunningOptions;
  private ended: Promise<ExitInfo> | undefined;
  private endedByUs = false;
  private readonly onAbort: () => void;

  constructor(o: RunningOptions) {
    this.o = o;
    this.onAbort = () => void this.kill().catch(() => undefined);
    if (o.ctx.signal.aborted) this.onAbort();
    else o.ctx.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  wait(): Promise<ExitInfo> {
    this.ended ??= this.observeEnd().finally(() => {
      this.o.ctx.signal.removeEventListener('abort', this.onAbort);
      this.o.onEnd();
    });
    return this.ended;
  }

  private async observeEnd(): Promise<ExitInfo> {
    const { client, id } = this.o;
    let body: { StatusCode?: number; Error?: { Message?: string } | null };
    try {
      body = JSON.parse((await this.o.waitBody).toString('utf8')) as typeof body;
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      return { exitCode: 137, lost: true, reason: `lost contact with the Docker engine (${why})` };
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.o.logsDone, new Promise<void>((r) => (timer = setTimeout(r, LOG_DRAIN_MS)))]);
    clearTimeout(timer);
    const exitCode = body.StatusCode ?? -1;
    if (body.Error?.Message) return { exitCode, reason: body.Error.Message };
    if (exitCode !== 137 || this.endedByUs) return { exitCode };
    // 137 is SIGKILL: the kernel's OOM killer, someone's `docker kill`, or the container removed.
    try {
      const info = await client.inspectContainer(id);
      if (info.State.OOMKilled) return { exitCode, reason: 'out of memory (killed)' };
      return { exitCode, reason: 'killed (SIGKILL) outside dstack' };
    } catch (e) {
      if (isStatus(e, 404)) return { exitCode, lost: true, reason: 'the container was removed outside dstack' };
      return { exitCode, reason: 'killed (SIGKILL)' };
    }
  }

  async stop(graceSeconds: number): Promise<void> {
    this.endedByUs = true;
    try {
      // The engine sends SIGTERM, then SIGKILL after t seconds, and answers once the container is down.
      await this.o.client.call('POST', `/containers/${this.o.id}/stop`, { query: { t: Math.max(0, Math.round(graceSeconds)) } });
    } catch (e) {
      if (!isStatus(e, 304, 404)) throw e;
    }
    await this.wait();
  }

  async kill(): Promise<void> {
    this.endedByUs = true;
    try {
      await this.o.client.call('POST', `/containers/${this.o.id}/kill`);
    } catch (e) {
      if (!isStatus(e, 404, 409)) throw e;
    }
    await this.wait();
  }
}

function createError(e: unknown, image: string, job: string): unknown {
  if (!(e instanceof DockerApiError)) return e;
  if (e.status === 404 && /image/i.test(e.message)) {
    return new DstackError('DS0201', `image '${image}' is not available locally (${e.message})`, {
      hint: `build it locally or pull it with \`docker pull ${image}\``,
    });
  }
  return new DstackError('DS0203', `the container for job ${job} could not be created: ${e.message}`, { cause: e });
}

function startError(e: unknown, job: string, ports: readonly number[]): unknown {
  if (!(e instanceof DockerApiError)) return e;
  if (ports.length && /port is already allocated|address already in use|bind/i.test(e.message)) {
    return new DstackError('DS0204', `port ${ports.join(', ')} of job ${job} could not be published: ${e.message}`, {
      hint: 'another program took the port; run the job again to pick a free one',
      cause: e,
    });
  }
  return new DstackError('DS0203', `the container for job ${job} could not be started: ${e.message}`, { cause: e });
}
