/**
 * A job on an instance: the remote machine every SSH-reached backend runs (machine.ts), plus what an
 * instance adds — a lost connection is explained by asking the cloud (a preempted spot instance ends
 * the job `interrupted`), and teardown terminates the instance.
 */
import type { ArtifactStore, Manifest } from '../../artifacts/types.js';
import type { BackendHandle, ExitInfo, JobContext, LogSink, Machine, RunningJob, StageInput } from '../../engine/backend.js';
import type { ArtifactSpec } from '../../engine/types.js';
import type { InstanceProvider, InstanceState } from './instance.js';
import type { RemoteMachine } from './machine.js';
import type { SshConnection } from './session.js';

export interface InstanceMachineOptions {
  readonly remote: RemoteMachine;
  readonly connection: SshConnection;
  /** The instance's recorded handle. */
  readonly instance: BackendHandle;
  readonly provider: InstanceProvider;
}

export class InstanceMachine implements Machine {
  private readonly o: InstanceMachineOptions;
  private tornDown: Promise<void> | undefined;

  constructor(options: InstanceMachineOptions) {
    this.o = options;
  }

  bootstrap(ctx: JobContext): Promise<void> {
    return this.o.remote.bootstrap(ctx);
  }

  stage(ctx: JobContext, input: StageInput): Promise<void> {
    return this.o.remote.stage(ctx, input);
  }

  async start(ctx: JobContext, env: Readonly<Record<string, string>>, logs: LogSink): Promise<RunningJob> {
    const running = await this.o.remote.start(ctx, env, logs);
    let ended: Promise<ExitInfo> | undefined;
    return {
      wait: () => (ended ??= running.wait().then((exit) => this.explain(exit))),
      stop: (grace) => running.stop(grace),
      kill: () => running.kill(),
    };
  }

  /** A job whose machine was lost: preempted, or lost otherwise, as the cloud tells it. */
  private async explain(exit: ExitInfo): Promise<ExitInfo> {
    if (!exit.lost) return exit;
    const state: InstanceState = await this.o.provider.state(this.o.instance).catch(() => 'gone' as const);
    if (state === 'preempted') {
      return { ...exit, lost: 'preempted', reason: `the instance ${this.o.connection.label} was preempted: the cloud took the spot instance back` };
    }
    return { ...exit, lost: 'lost', reason: `${exit.reason ?? `lost the instance ${this.o.connection.label}`} (the cloud says it is ${state})` };
  }

  collect(ctx: JobContext, artifacts: readonly ArtifactSpec[], store: ArtifactStore): Promise<Manifest> {
    return this.o.remote.collect(ctx, artifacts, store);
  }

  /**
   * The instance takes the job's container and folder with it: what this process holds is let go
   * (the heartbeat first, so nothing talks to an instance going away) and the instance terminated,
   * without the round trips of cleaning the host. A failed terminate is the error; the sweep and the
   * dead-man switch end that instance.
   */
  teardown(): Promise<void> {
    this.tornDown ??= (async () => {
      await this.o.remote.letGo();
      await this.o.connection.close();
      await this.o.provider.terminate(this.o.instance);
    })();
    return this.tornDown;
  }
}
