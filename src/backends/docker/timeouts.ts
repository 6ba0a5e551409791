/**
 * How long dstack waits for the Docker engine, per kind of call — in one place. A frozen engine (a
 * hung dockerd, a socket proxy stopped, an SSH forward whose far end froze) answers nothing and
 * closes nothing: without these, the call waits forever. A call past its time fails with DS0060,
 * naming the call and the engine.
 *
 * The log stream (attach) and the container's wait are open for the whole job, however long: they
 * have a time only until the engine acknowledges them. While they are open, a heartbeat (`ping`
 * every `heartbeatMs`) tells a frozen engine from a quiet job: `heartbeatMisses` pings in a row
 * without an answer end the job with the engine's loss as its cause.
 *
 * `DSTACK_DOCKER_TIMEOUT_SCALE` (a number, default 1) multiplies every figure: the fault tests set
 * it low so a frozen engine is found in seconds; a slow engine on a loaded machine may set it high.
 */
export interface DockerTimeouts {
  /** `/_ping`, and each heartbeat ping. */
  readonly ping: number;
  /** Inspecting an image or a container, listing containers, `/info`. */
  readonly inspect: number;
  /**
   * Creating a container. Long: the engine may be busy with other containers' mounts. A create
   * that times out may still make the container; its labels let the next sweep find it.
   */
  readonly create: number;
  /** Starting a container (mounts, network, the runtime's start). */
  readonly start: number;
  /** Stopping: the job's grace (the engine's own `t`) plus this much for the engine to answer. */
  readonly stopExtra: number;
  /** Killing or removing a container (with its anonymous volumes). */
  readonly remove: number;
  /** Until the engine acknowledges a stream (attach, wait, a pull's progress): headers only. */
  readonly streamOpen: number;
  /** A pull may take long, but its progress stream must not go quiet for longer than this. */
  readonly pullIdle: number;
  /**
   * One call of the archive API (a tar of a saved environment, in or out): long, as it carries
   * the whole tar; a call left on the `inspect` default would fail a large environment.
   */
  readonly archive: number;
  /** How often a running job's engine is pinged. */
  readonly heartbeatMs: number;
  /** Pings in a row without an answer before the engine counts as lost. */
  readonly heartbeatMisses: number;
}

const BASE: DockerTimeouts = {
  ping: 5_000,
  inspect: 15_000,
  create: 60_000,
  start: 60_000,
  stopExtra: 30_000,
  remove: 30_000,
  streamOpen: 15_000,
  pullIdle: 120_000,
  archive: 600_000,
  heartbeatMs: 10_000,
  heartbeatMisses: 3,
};

/** The figures in force, scaled by DSTACK_DOCKER_TIMEOUT_SCALE. */
export function dockerTimeouts(env: NodeJS.ProcessEnv = process.env): DockerTimeouts {
  const scale = Number(env.DSTACK_DOCKER_TIMEOUT_SCALE ?? '1');
  if (!Number.isFinite(scale) || scale <= 0 || scale === 1) return BASE;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(BASE)) out[k] = k === 'heartbeatMisses' ? v : Math.max(1, Math.round(v * scale));
  return out as unknown as DockerTimeouts;
}
