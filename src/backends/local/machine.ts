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
 * The container itself (create, attach ‖ wait, start, stop, kill, remove) is job-container.ts,
 * shared with the SSH pool's machines; round trips on the hot path: image inspect (bootstrap, or
 * `imageDigest` before it: shared per backend), then the calls `docker run --rm` makes.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, posix, relative, resolve, sep } from 'node:path';
import { makeManifest } from '../../artifacts/manifest.js';
import { materializeSnapshot } from '../../artifacts/tree.js';
import { isFileObjectStore, type ArtifactStore, type Manifest } from '../../artifacts/types.js';
import type { BackendHandle, JobContext, LogSink, Machine, RunningJob, StageInput } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import { mkdirNoFollow } from '../../engine/safe-fs.js';
import type { ArtifactSpec, ContentHash } from '../../engine/types.js';
import { artifactFolders } from '../docker/artifact-dirs.js';
import { LABEL_HOME, LABEL_JOB, LABEL_RUN, cacheMounts, createOptions, freePorts } from '../docker/container.js';
import { notifyUnsaved, saveWithDeps, stageDeps, type DepMount } from '../docker/deps.js';
import type { DockerClient } from '../docker/docker.js';
import { JobContainer, hasGpuSupport } from '../docker/job-container.js';
import { pinnedImage, registryAuthOf, type ImageCache } from '../docker/pull.js';
import { OutsideArtifacts, insideSpecs } from '../docker/outside-artifacts.js';

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
  private readonly container: JobContainer;
  /** Keys the cache folder by repository; set by stage(). */
  private repoKey = 'none';
  /** The image's HOME, learnt by bootstrap. */
  private imageHome: string | undefined;
  /** Set by stage(): where the deps' objects come from, and which were hard-linked into the job's folder. */
  private store: ArtifactStore | undefined;
  private linked: readonly ContentHash[] = [];
  /** The image id the container is created from, pinned by bootstrap. */
  private imageId: string | undefined;
  /** Artifacts outside /workflow: the deps' restored before start, the job's read after it. */
  private readonly outside = new OutsideArtifacts();

  constructor(options: LocalMachineOptions) {
    this.client = options.client;
    this.images = options.images;
    this.home = options.home;
    this.labels = options.labels ?? {};
    this.jobDir = jobDirOf(options.home, options.ctx.job);
    this.workflowDir = join(this.jobDir, 'workflow');
    this.depsDir = join(this.jobDir, 'deps');
    this.container = new JobContainer({ client: this.client });
  }

  handle(): BackendHandle {
    return { container: this.container.id ?? null, jobDir: this.jobDir };
  }

  async bootstrap(ctx: JobContext): Promise<void> {
    const { spec } = ctx;
    const gpu = spec.resources.gpu;
    const pin = ctx.imageDigest ? { digest: ctx.imageDigest, pullAs: [] } : undefined;
    const [image, info] = await Promise.all([
      pinnedImage(this.images, spec.image, pin, { auth: registryAuthOf(spec, ctx.secrets), notify: ctx.notify, signal: ctx.signal, where: 'in the local engine' }),
      gpu && gpu.count > 0 ? this.client.info(ctx.signal) : undefined,
    ]);
    this.imageHome = image.home;
    this.imageId = image.id;
    if (info) {
      if (!hasGpuSupport(info)) {
        throw new DstackError('DS0202', 'this Docker engine has no GPU support (no nvidia runtime)', {
          hint: 'install the NVIDIA Container Toolkit and run `nvidia-ctk runtime configure --runtime=docker`, then restart dockerd; or run with `--remote`',
        });
      }
    }
  }

  async stage(ctx: JobContext, input: StageInput): Promise<void> {
    this.repoKey = createHash('sha256').update(input.repoRoot).digest('hex').slice(0, 16);
    this.store = input.store;
    // Recorded before anything is written, so a crash mid-copy still leaves something to reap.
    ctx.recordHandle(this.handle());
    await rm(this.workflowDir, { recursive: true, force: true });
    await mkdirNoFollow(this.home, relative(this.home, this.workflowDir), { what: `the folder of job ${ctx.job}` });
    await materializeSnapshot(input.store, input.snapshot, this.workflowDir);
    const deps = this.outside.stage(input.deps, input.store);
    const staged = await stageDeps({ deps, store: input.store, depsDir: this.depsDir, workflowDir: this.workflowDir });
    this.depMounts = staged.mounts;
    this.linked = staged.linked;
    const folders = artifactFolders(ctx.spec.artifacts, { snapshot: input.snapshot, depPaths: staged.mounts.map((m) => m.path) });
    // Best effort: whatever stands in the way (a symlink, never followed) is the job's to meet, as without this.
    for (const f of folders) await mkdirNoFollow(this.workflowDir, f, { what: 'an artifact folder' }).catch(() => undefined);
  }

  async start(ctx: JobContext, env: Readonly<Record<string, string>>, logs: LogSink): Promise<RunningJob> {
    const { spec } = ctx;
    const cacheRel = posix.join('cache', this.repoKey, spec.workflow.replace(/[/\\]/g, '_'));
    const cacheDir = join(this.home, cacheRel);
    // Right before the engine binds them: no folder on the way may be a symlink (a job that wrote one
    // into a folder it was given must not get another run to bind the link's target: issue 7 §1).
    const [ports] = await Promise.all([
      freePorts(spec.ports),
      mkdirNoFollow(this.home, relative(this.home, this.workflowDir), { what: `the folder of job ${ctx.job}` }),
      ...cacheMounts(spec.cache, this.imageHome).map((m) =>
        mkdirNoFollow(this.home, posix.join(cacheRel, m.source), { what: `the cache folder of ${m.target} for ${spec.workflow}` }),
      ),
    ]);
    const create = createOptions({
      spec,
      ...(this.imageId ? { image: this.imageId } : {}),
      labels: { ...this.labels, [LABEL_RUN]: ctx.run, [LABEL_JOB]: ctx.job, [LABEL_HOME]: this.home },
      workflowDir: this.workflowDir,
      cacheDir,
      env,
      ports,
      home: this.imageHome,
      depMounts: this.depMounts.map((m) => ({ source: join(this.depsDir, m.path), path: m.path })),
    });
    const job = await this.container.start({
      ctx,
      create,
      logs,
      ports,
      onCreated: () => ctx.recordHandle(this.handle()),
      beforeStart: this.outside.beforeStart(ctx, this.client, this.imageHome),
    });
    for (const p of ports) ctx.notify({ kind: 'port', containerPort: p, url: `http://127.0.0.1:${p}` });
    for (const a of spec.artifacts) {
      if (a.mount) ctx.notify({ kind: 'info', message: `artifact ./${a.path} is live at ${a.path ? join(this.workflowDir, a.path) : this.workflowDir}` });
    }
    return job;
  }

  /**
   * Also after a failed job, or one that never started: what is there is saved, what is not is
   * reported missing. A path the deps provided (read-only, so unchanged) is read from the deps'
   * folder, not from its empty mount point in /workflow.
   */
  async collect(ctx: JobContext, all: readonly ArtifactSpec[], store: ArtifactStore): Promise<Manifest> {
    const outside = await this.outside.collect({
      ctx,
      client: this.client,
      container: this.container.id,
      specs: all,
      home: this.imageHome,
      store,
    });
    const artifacts = insideSpecs(all);
    if (!existsSync(this.workflowDir)) {
      for (const a of artifacts) ctx.notify({ kind: 'info', message: `artifact '${a.path}' was not found in /workflow` });
      return makeManifest(outside);
    }
    const { manifest, missing, skipped } = await saveWithDeps({
      artifacts,
      depPaths: this.depMounts.map((m) => m.path),
      save: (from, specs) => store.save(from === 'workflow' ? this.workflowDir : this.depsDir, specs),
    });
    notifyUnsaved(ctx, missing, skipped);
    return outside.length ? makeManifest([...manifest.entries, ...outside]) : manifest;
  }

  async teardown(): Promise<void> {
    // The container first: while it runs it may still be writing into the folder.
    await this.container.remove();
    const objects = this.store?.objects;
    const remove = (): Promise<void> => removeJobDir(this.home, this.jobDir);
    // The deps' hard links go too: the store keeps its objects' "already verified" records across that.
    if (objects && isFileObjectStore(objects) && this.linked.length) await objects.unlinking(this.linked, remove);
    else await remove();
  }
}
