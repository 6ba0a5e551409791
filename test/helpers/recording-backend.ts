/**
 * A backend that records what the executor asks of it (the seam nektos/act tests its job executor
 * with) and plays what a script says: exit codes, hanging jobs, digests, outputs, failures, losses.
 */
import { emptyManifest, type Manifest } from '../../src/artifacts/types.js';
import type { Backend, ExitInfo, JobContext, Machine, MachineLoss, RunningJob } from '../../src/engine/backend.js';
import type { DstackError } from '../../src/engine/errors.js';
import { asContentHash, type JobSpec } from '../../src/engine/types.js';
import { jobSpec } from './spec.js';

export interface Script {
  /** Exit code per workflow (default 0). */
  exit?: Record<string, number>;
  /** Workflows whose bootstrap throws this error. */
  bootstrapError?: Record<string, DstackError>;
  /** Workflows that run until stopped or killed. */
  hang?: Set<string>;
  /** Image digest per image name (default `sha256:<image>`). */
  digest?: Record<string, string>;
  /** Images whose digest cannot be had: this error. */
  digestError?: Record<string, DstackError>;
  /** What collect saves, per workflow (default: nothing). */
  outputs?: Record<string, Manifest>;
  /** Workflows whose provision records a handle `{ job }`, then throws this error. */
  provisionError?: Record<string, DstackError>;
  /** Workflows whose teardown throws. */
  teardownFails?: Set<string>;
  /** Workflows whose machine the backend loses mid-job, with this cause. */
  lost?: Record<string, MachineLoss>;
  /** Only this many of a workflow's machines are lost (default: every one). */
  lostTimes?: Record<string, number>;
}


/** `steps` gets each call as `workflow:step`; `pins` the image digest each bootstrap was told, as `workflow:digest`. */
export function recordingBackend(script: Script, steps: string[], pins: string[] = []): Backend {
  const losses = new Map<string, number>();
  return {
    id: 'test',
    supports: () => ({ ok: true }),
    check: async () => undefined,
    observe: async () => ({ state: 'gone' }),
    reap: async (handle) => void steps.push(`reap(${String(handle.job)})`),
    close: async () => undefined,
    imageDigest: async (spec) => {
      const failed = script.digestError?.[spec.image];
      if (failed) throw failed;
      return script.digest?.[spec.image] ?? `sha256:${spec.image}`;
    },
    provision: async (ctx: JobContext): Promise<Machine> => {
      const wf = ctx.spec.workflow;
      steps.push(`${wf}:provision`);
      const failed = script.provisionError?.[wf];
      if (failed) {
        ctx.recordHandle({ job: ctx.job });
        throw failed;
      }
      return {
        bootstrap: async (c) => {
          steps.push(`${wf}:bootstrap`);
          c.recordHandle({ job: c.job });
          pins.push(`${wf}:${c.imageDigest}`);
          const err = script.bootstrapError?.[wf];
          if (err) throw err;
        },
        stage: async (_c, input) => void steps.push(`${wf}:stage(${input.deps.length} deps)`),
        start: async (_c, env, logs): Promise<RunningJob> => {
          steps.push(`${wf}:start`);
          logs('stdout', Buffer.from(`hello from ${wf} ${env.TOKEN ?? ''}\n`));
          let finish!: (e: ExitInfo) => void;
          const ended = new Promise<ExitInfo>((r) => (finish = r));
          const lostSoFar = losses.get(wf) ?? 0;
          const loss = lostSoFar < (script.lostTimes?.[wf] ?? Infinity) ? script.lost?.[wf] : undefined;
          if (loss) losses.set(wf, lostSoFar + 1);
          if (loss) setImmediate(() => finish({ exitCode: 137, lost: loss, reason: loss === 'preempted' ? 'the spot instance was preempted' : 'lost connection to the host' }));
          else if (!script.hang?.has(wf)) setImmediate(() => finish({ exitCode: script.exit?.[wf] ?? 0 }));
          return {
            wait: () => ended,
            stop: async () => {
              steps.push(`${wf}:stop`);
              finish({ exitCode: 143 });
            },
            kill: async () => {
              steps.push(`${wf}:kill`);
              finish({ exitCode: 137 });
            },
          };
        },
        collect: async () => {
          steps.push(`${wf}:collect`);
          return script.outputs?.[wf] ?? emptyManifest;
        },
        teardown: async () => {
          steps.push(`${wf}:teardown`);
          if (script.teardownFails?.has(wf)) throw new Error('the engine did not answer');
        },
      };
    },
  };
}

export const spec = (workflow: string, env: Record<string, string> = {}): JobSpec => jobSpec({ workflow, image: 'img', env });

export const SNAPSHOT = { manifest: emptyManifest, hash: asContentHash('0'.repeat(64)) };
