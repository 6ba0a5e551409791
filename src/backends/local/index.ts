/**
 * The default backend: jobs in containers of the Docker engine that DOCKER_HOST names (or the local
 * socket). Opening it costs nothing; the first call talks to the engine.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  Backend,
  BackendHandle,
  BackendOpenOptions,
  Capability,
  ImageDigestOptions,
  JobContext,
  Machine,
  ObservedState,
  OwnedMachine,
} from '../../engine/backend.js';
import type { JobSpec } from '../../engine/types.js';
import type { Plugin } from '../plugin.js';
import { LABEL_HOME, LABEL_JOB } from '../docker/container.js';
import { DockerClient, endpointFromEnv } from '../docker/docker.js';
import { observeContainer } from '../docker/job-container.js';
import { LocalMachine, jobDirOf, removeJobDir } from './machine.js';
import { ImageCache, registryAuthOf } from '../docker/pull.js';

/**
 * Settings (BackendOpenOptions.settings) the local backend reads; none comes from config.json.
 * `labels`: extra container labels (tests use `dstack.test` to sweep what they made).
 */
export interface LocalBackendSettings {
  readonly labels?: Readonly<Record<string, string>>;
}

export class LocalBackend implements Backend {
  readonly id = 'local';
  readonly home: string;
  private readonly labels: Readonly<Record<string, string>>;
  private clientValue: DockerClient | undefined;
  private readonly images = new ImageCache(() => this.client);

  constructor(options: BackendOpenOptions) {
    this.home = options.home;
    this.labels = readLabels(options.settings);
  }

  /** Created on first use, reading DOCKER_HOST then. */
  get client(): DockerClient {
    this.clientValue ??= new DockerClient(endpointFromEnv());
    return this.clientValue;
  }

  supports(_spec: JobSpec): Capability {
    // GPU support depends on the engine, which is only known after a round trip: bootstrap checks it.
    return { ok: true };
  }

  async check(signal: AbortSignal): Promise<void> {
    // A frozen engine fails here with DS0060 after the ping's time (timeouts.ts), not later.
    await this.client.ping(signal);
  }

  async imageDigest(spec: JobSpec, options: ImageDigestOptions): Promise<string> {
    const auth = registryAuthOf(spec, options.secrets);
    const ensured = await this.images.ensure(spec.image, { auth, notify: options.notify, signal: options.signal, pull: options.pull });
    return ensured.id;
  }

  async provision(ctx: JobContext): Promise<Machine> {
    const machine = new LocalMachine({ client: this.client, images: this.images, home: this.home, ctx, labels: this.labels });
    // The job folder is made by stage(); recorded now, so every handle of a job names it.
    ctx.recordHandle(machine.handle());
    return machine;
  }

  async observe(handle: BackendHandle): Promise<ObservedState> {
    const id = handle.container;
    if (typeof id !== 'string' || !id) return { state: 'gone' };
    return observeContainer(this.client, id);
  }

  async reap(handle: BackendHandle): Promise<void> {
    const id = handle.container;
    // The container first: while it runs it may still be writing into the folder.
    if (typeof id === 'string' && id) await this.client.removeContainer(id);
    if (typeof handle.jobDir === 'string') await removeJobDir(this.home, handle.jobDir);
  }

  /**
   * This home's containers (by the `dstack.home` label) and job folders, whether or not a record
   * names them: a dstack killed between create and record, or cut off from its engine, leaves them.
   * A folder's name (`run_workflow`) tells its run, not always its job; the sweep asks the run.
   */
  async leftovers(): Promise<readonly OwnedMachine[]> {
    const jobsDir = join(this.home, 'jobs');
    const [containers, folders] = await Promise.all([
      this.client.listContainers([`${LABEL_HOME}=${this.home}`]),
      readdir(jobsDir).catch(() => [] as string[]),
    ]);
    const out: OwnedMachine[] = [];
    const covered = new Set<string>();
    for (const c of containers) {
      const job = c.Labels?.[LABEL_JOB];
      const jobDir = job ? jobDirOf(this.home, job) : null;
      if (jobDir) covered.add(jobDir);
      out.push({ handle: { container: c.Id, jobDir }, id: `container ${c.Id.slice(0, 12)}`, state: c.State, ...(job ? { job } : {}) });
    }
    for (const name of folders) {
      const jobDir = join(jobsDir, name);
      if (covered.has(jobDir)) continue;
      // Run names hold no `_`: the first one ends the run's name (jobDirOf).
      const run = name.split('_', 1)[0] ?? name;
      out.push({ handle: { container: null, jobDir }, id: `folder jobs/${name}`, state: 'folder', run, job: name.replace('_', '/') });
    }
    return out;
  }

  async close(): Promise<void> {
    this.clientValue?.close();
    this.clientValue = undefined;
    this.images.clear();
  }
}

function readLabels(settings: BackendOpenOptions['settings']): Record<string, string> {
  const raw = settings?.labels;
  if (!raw || typeof raw !== 'object') return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) if (typeof v === 'string' && k !== LABEL_HOME) out[k] = v;
  return out;
}

export const localPlugin: Plugin = {
  kind: 'local',
  describe: 'containers of the local Docker engine',
  open: (options) => new LocalBackend(options),
};
