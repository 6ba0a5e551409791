/**
 * The container half of a job, shared by every backend that runs jobs on a Docker engine: the local
 * engine (LocalMachine) and a host's engine reached over SSH (the pool's RemoteMachine). What differs
 * between them — where /workflow comes from, how ports reach the user — is decided by the machine;
 * this runs the create options it is given over the DockerClient it is given.
 *
 * Round trips: create, attach ‖ wait (in parallel, both acknowledged by the engine before start),
 * start, then remove — the same calls `docker run --rm` makes. Inspect only when an exit code of 137
 * needs explaining.
 */
import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExitInfo, JobContext, LogSink, ObservedState, RunningJob } from '../../engine/backend.js';
import { DstackError } from '../../engine/errors.js';
import { demuxer } from './demux.js';
import { DockerApiError, isStatus, readAll, type ContainerCreateOptions, type DockerClient } from './docker.js';

export interface StartContainerOptions {
  readonly ctx: JobContext;
  readonly create: ContainerCreateOptions;
  readonly logs: LogSink;
  /** Called with the id as soon as the engine has made the container (record the handle there). */
  readonly onCreated: (id: string) => void;
  /**
   * Runs between create and start, on the container made: the deps' artifacts outside /workflow are
   * written into its own layer there (archive.ts). A throw ends the job before it started.
   */
  readonly beforeStart?: (id: string) => Promise<void>;
  /** Host ports asked for, to explain a start that failed on them. */
  readonly ports?: readonly number[];
  /** Says where the image was looked for, in DS0201 ("locally", "on root@host:22"). */
  readonly where?: string;
}

export interface JobContainerOptions {
  readonly client: DockerClient;
  /**
   * Why the engine's streams broke, when the machine knows better than the socket error (the SSH
   * connection to the host is gone). Undefined: "lost contact with the Docker engine".
   */
  readonly lostReason?: () => string | undefined;
}

/** One job's container on one engine: started once, removed by `remove` (idempotent). */
export class JobContainer {
  private readonly client: DockerClient;
  private readonly lostReason: () => string | undefined;
  private readonly streams = new Set<IncomingMessage>();
  id: string | undefined;

  constructor(options: JobContainerOptions) {
    this.client = options.client;
    this.lostReason = options.lostReason ?? (() => undefined);
  }

  async start(o: StartContainerOptions): Promise<RunningJob> {
    const { ctx } = o;
    const { spec } = ctx;
    ctx.signal.throwIfAborted();
    let id: string;
    try {
      // No abort signal here: an aborted create may still make a container whose id we'd never learn.
      id = (await this.client.createContainer(o.create)).Id;
    } catch (e) {
      throw createError(e, spec.image, ctx.job, o.where ?? 'locally');
    }
    this.id = id;
    o.onCreated(id);
    ctx.signal.throwIfAborted();
    await o.beforeStart?.(id);

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
      throw createError(failed?.status === 'rejected' ? failed.reason : undefined, spec.image, ctx.job, o.where ?? 'locally');
    }
    const logsDone = new Promise<void>((done) => {
      const push = demuxer(o.logs);
      attached.value.on('data', push);
      attached.value.on('end', done);
      attached.value.on('close', done);
      attached.value.on('error', () => done());
    });
    const waitBody = readAll(waiting.value);
    waitBody.catch(() => undefined);

    try {
      await this.client.call('POST', `/containers/${id}/start`, { timeoutMs: this.client.timeouts.start, what: 'start the container' });
    } catch (e) {
      this.destroyStreams();
      throw startError(e, ctx.job, o.ports ?? [], o.where);
    }
    return new ContainerRunningJob({
      client: this.client,
      id,
      ctx,
      waitBody,
      logsDone,
      lostReason: this.lostReason,
      onEnd: () => this.destroyStreams(),
    });
  }

  /** Removes the container (forced, with its anonymous volumes). Idempotent. */
  async remove(): Promise<void> {
    this.destroyStreams();
    if (this.id) await this.client.removeContainer(this.id);
  }

  destroyStreams(): void {
    for (const s of this.streams) s.destroy();
    this.streams.clear();
  }
}

/** The engine can give a container GPUs: an nvidia runtime, or CDI specs. */
export function hasGpuSupport(info: { readonly Runtimes?: Record<string, unknown>; readonly CDISpecDirs?: readonly string[] | null }): boolean {
  return Object.keys(info.Runtimes ?? {}).includes('nvidia') || (info.CDISpecDirs ?? []).length > 0;
}

/** What the engine holds for a container id: for `observe` of a recorded handle. */
export async function observeContainer(client: DockerClient, id: string): Promise<ObservedState> {
  try {
    const info = await client.inspectContainer(id);
    const s = info.State;
    if (s.Running || s.Restarting || s.Paused) return { state: 'running' };
    // Created but never started: the CLI died between create and start; nothing will run it.
    if (s.Status === 'created') return { state: 'gone' };
    return { state: 'exited', exitCode: s.ExitCode };
  } catch (e) {
    if (isStatus(e, 404)) return { state: 'gone' };
    throw e;
  }
}

interface RunningOptions {
  readonly client: DockerClient;
  readonly id: string;
  readonly ctx: JobContext;
  readonly waitBody: Promise<Buffer>;
  readonly logsDone: Promise<void>;
  readonly lostReason: () => string | undefined;
  readonly onEnd: () => void;
}

/** How long the last log lines may trail the exit before wait() resolves without them. */
const LOG_DRAIN_MS = 2000;

class ContainerRunningJob implements RunningJob {
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
    const beating = new AbortController();
    try {
      const first = await Promise.race([this.o.waitBody.then((b) => ({ b })), heartbeat(client, beating.signal).then((frozen) => ({ frozen }))]);
      if ('frozen' in first) return await this.lostEngine(first.frozen);
      body = JSON.parse(first.b.toString('utf8')) as typeof body;
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      // The stream breaks a moment before the SSH layer reports why: give it that moment.
      await sleep(50);
      return await this.lostEngine(new DstackError('DS0061', `lost contact with the Docker engine at ${client.endpoint.describe} while job ${this.o.ctx.job} ran (${why})`, {
        hint: 'check the engine with `docker info`; the job\'s container is removed by the next dstack command that reaches it',
      }));
    } finally {
      beating.abort();
    }
    const drained = new AbortController();
    await Promise.race([this.o.logsDone, sleep(LOG_DRAIN_MS, undefined, { signal: drained.signal }).catch(() => undefined)]);
    drained.abort();
    const exitCode = body.StatusCode ?? -1;
    if (body.Error?.Message) return { exitCode, reason: body.Error.Message };
    if (exitCode !== 137 || this.endedByUs) return { exitCode };
    // 137 is SIGKILL: the kernel's OOM killer, someone's `docker kill`, or the container removed.
    try {
      const info = await client.inspectContainer(id);
      if (info.State.OOMKilled) return { exitCode, reason: 'out of memory (killed)' };
      return { exitCode, reason: 'killed (SIGKILL) outside dstack' };
    } catch (e) {
      const lost = this.o.lostReason();
      if (lost) return { exitCode, lost: 'lost', reason: lost };
      if (isStatus(e, 404)) return { exitCode, lost: 'lost', reason: 'the container was removed outside dstack' };
      return { exitCode, reason: 'killed (SIGKILL)' };
    }
  }

  /**
   * The wait broke, or the engine froze. Not a 137: nobody saw the container end. An engine that
   * answers again (a socket blip) may still say how it ended; otherwise the exit stays unknown and
   * the loss is the cause.
   */
  private async lostEngine(error: DstackError): Promise<ExitInfo> {
    const machine = this.o.lostReason();
    if (machine) return { lost: 'lost', reason: machine };
    if (error.code !== 'DS0060') {
      try {
        const s = (await this.o.client.inspectContainer(this.o.id)).State;
        if (s.Status === 'exited' || s.Status === 'dead') return { exitCode: s.ExitCode, ...(s.ExitCode === 0 ? {} : { reason: `exited with code ${s.ExitCode} (seen after the engine's stream broke)` }) };
      } catch {
        // Still unreachable: the loss stands.
      }
    }
    return { lost: 'lost', reason: error.message, error };
  }

  async stop(graceSeconds: number): Promise<void> {
    this.endedByUs = true;
    try {
      // The engine sends SIGTERM, then SIGKILL after t seconds, and answers once the container is down.
      const t = Math.max(0, Math.round(graceSeconds));
      const timeoutMs = t * 1000 + this.o.client.timeouts.stopExtra;
      await this.o.client.call('POST', `/containers/${this.o.id}/stop`, { query: { t }, timeoutMs, what: 'stop the container' });
    } catch (e) {
      if (!isStatus(e, 304, 404)) throw e;
    }
    await this.wait();
  }

  async kill(): Promise<void> {
    this.endedByUs = true;
    try {
      await this.o.client.call('POST', `/containers/${this.o.id}/kill`, { timeoutMs: this.o.client.timeouts.remove, what: 'kill the container' });
    } catch (e) {
      if (!isStatus(e, 404, 409)) throw e;
    }
    await this.wait();
  }
}

function createError(e: unknown, image: string, job: string, where: string): unknown {
  if (!(e instanceof DockerApiError)) return e;
  if (e.status === 404 && /image/i.test(e.message)) {
    return new DstackError('DS0201', `image '${image}' is not available ${where} (${e.message})`, {
      hint: where === 'locally' ? `build it locally or pull it with \`docker pull ${image}\`` : `build or pull it ${where}: \`docker pull ${image}\``,
    });
  }
  return new DstackError('DS0203', `the container for job ${job} could not be created: ${e.message}`, { cause: e });
}

export function startError(e: unknown, job: string, ports: readonly number[], where = 'locally'): unknown {
  if (!(e instanceof DockerApiError)) return e;
  // Jobs run under the engine's init (container.ts); an engine built without one says so at start.
  if (/docker-init|init binary|init-path/i.test(e.message)) {
    return new DstackError('DS0130', `the Docker engine ${where === 'locally' ? 'here' : where} has no init program (docker-init), which job ${job} runs under so that a stop reaches it: ${e.message}`, {
      hint: "install Docker's own packages (they ship docker-init), or tini and start dockerd with `--init-path /usr/bin/tini-static`",
      cause: e,
    });
  }
  if (ports.length && /port is already allocated|address already in use|bind/i.test(e.message)) {
    return new DstackError('DS0204', `port ${ports.join(', ')} of job ${job} could not be published: ${e.message}`, {
      hint: 'another program took the port; run the job again to pick a free one',
      cause: e,
    });
  }
  return new DstackError('DS0203', `the container for job ${job} could not be started: ${e.message}`, { cause: e });
}

/**
 * Resolves with DS0060 once the engine has missed `heartbeatMisses` pings in a row (frozen: its
 * streams stay open and silent); never while it answers. Ends quietly when `signal` aborts.
 */
async function heartbeat(client: DockerClient, signal: AbortSignal): Promise<DstackError> {
  const { heartbeatMs, heartbeatMisses } = client.timeouts;
  let misses = 0;
  let last: unknown;
  for (;;) {
    try {
      await sleep(heartbeatMs, undefined, { signal });
    } catch {
      return new Promise<never>(() => undefined);
    }
    try {
      await client.ping(signal);
      misses = 0;
    } catch (e) {
      if (signal.aborted) return new Promise<never>(() => undefined);
      last = e;
      if (++misses >= heartbeatMisses) break;
    }
  }
  const why = last instanceof DstackError && last.code === 'DS0060' ? '' : ` (${last instanceof Error ? last.message : String(last)})`;
  return new DstackError('DS0060', `the Docker engine at ${client.endpoint.describe} stopped answering while the job ran: ${heartbeatMisses} pings in a row went unanswered${why}`, {
    hint: 'check it with `docker info`; a hung dockerd needs a restart. The job\'s container is removed by the next dstack command that reaches the engine',
  });
}
