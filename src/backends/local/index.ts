/**
 * The default backend: jobs in containers of the Docker engine that DOCKER_HOST names (or the local
 * socket). Opening it costs nothing; the first call talks to the engine.
 */
import type {
  Backend,
  BackendHandle,
  BackendOpenOptions,
  Capability,
  ImageDigestOptions,
  JobContext,
  Machine,
  ObservedState,
} from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import type { JobSpec } from '../../engine/types.js';
import type { Plugin } from '../plugin.js';
import { LABEL_HOME } from '../docker/container.js';
import { DockerClient, endpointFromEnv } from '../docker/docker.js';
import { observeContainer } from '../docker/job-container.js';
import { LocalMachine, removeJobDir } from './machine.js';
import { ImageCache, registryAuthOf } from '../docker/pull.js';

/** How long `check` waits for the engine's `/_ping`. */
const PING_TIMEOUT_MS = 3000;

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
    const timeout = AbortSignal.timeout(PING_TIMEOUT_MS);
    try {
      await this.client.ping(AbortSignal.any([signal, timeout]));
    } catch (e) {
      if (timeout.aborted && !signal.aborted) {
        throw new DstackError('DS0200', `no Docker engine answers at ${this.client.endpoint.describe} (no reply within ${PING_TIMEOUT_MS / 1000} s)`, {
          hint: 'start one: `sudo dockerd &` or `scripts/ensure-docker.sh`, or set DOCKER_HOST',
          cause: e,
        });
      }
      throw e;
    }
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
