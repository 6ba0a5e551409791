/**
 * Nothing that costs money outlives its run. Every command that talks to a cloud first asks it for
 * this dstack home's machines (`Backend.owned`) and ends each one no live run holds: its job is over,
 * or not in this home at all, or the dstack process that ran it is gone. A machine of a job whose
 * run is supervised by a live process — this one or another on this host — is left alone, as is a
 * run supervised on another host, whose liveness this process cannot tell (its dead-man switch ends
 * it if that dstack is gone).
 *
 * The same rule sweeps what costs only room (`Backend.leftovers`): a local engine's containers and
 * job folders, found by this home's label and on disk rather than by the records, so a dstack
 * killed between the engine's answer and its record leaks nothing.
 */
import type { Backend, OwnedMachine } from './backend.js';
import { supervisorGone } from './reconcile.js';
import type { RunReader } from './store/types.js';
import { asJobId, isFinal, type RunName } from './types.js';

export interface SweptMachine extends OwnedMachine {
  /** Why it was ended, for the listing. */
  readonly why: string;
}

export interface SweepResult {
  readonly swept: readonly SweptMachine[];
  /** Still held by a live run: they cost money on purpose. */
  readonly kept: readonly OwnedMachine[];
  /** Stale, but ending them failed (they are tried again by the next command). */
  readonly failed: readonly (SweptMachine & { readonly error: string })[];
}

/** Why the machine is stale, or undefined while a live run holds it. */
export function staleBecause(store: Pick<RunReader, 'getJob' | 'getRun'>, m: OwnedMachine): string | undefined {
  if (!m.job) return m.run ? runStale(store, m.run, `run ${m.run}`) : 'it names no job';
  const job = store.getJob(asJobId(m.job));
  // A name the backend could only guess (a folder's): the run decides.
  if (!job) return m.run ? runStale(store, m.run, m.job) : `its job ${m.job} is not in this dstack home`;
  if (isFinal(job.status)) return `its job ${m.job} ended ${job.status}`;
  return runStale(store, job.run, m.job);
}

function runStale(store: Pick<RunReader, 'getRun'>, name: string, what: string): string | undefined {
  const run = store.getRun(name as RunName);
  if (!run) return `the run of ${what} is not in this dstack home`;
  if (isFinal(run.status)) return `its run ${run.name} ended ${run.status}`;
  if (supervisorGone(run)) return `the dstack process that ran ${what} (pid ${run.pid}) is gone`;
  return undefined;
}

/** Ends this home's machines that cost money (`Backend.owned`) and no live run holds. */
export async function sweepMachines(store: Pick<RunReader, 'getJob' | 'getRun'>, backend: Backend): Promise<SweepResult> {
  if (!backend.owned) return { swept: [], kept: [], failed: [] };
  return sweepList(store, backend, await backend.owned());
}

/**
 * Removes this home's leftovers (`Backend.leftovers`: containers by label, job folders) that no
 * live run holds — what a dstack killed at any point, or cut off from its engine, left behind.
 */
export async function sweepLeftovers(store: Pick<RunReader, 'getJob' | 'getRun'>, backend: Backend): Promise<SweepResult> {
  if (!backend.leftovers) return { swept: [], kept: [], failed: [] };
  return sweepList(store, backend, await backend.leftovers(), (m) => {
    const why = staleBecause(store, m);
    // An unfinished job whose dstack died is the reconciler's (`ps`): a container still running
    // is what shows its run as running, and its folder is that container's /workflow.
    if (why !== undefined && (m.state === 'running' || m.state === 'folder') && unfinished(store, m)) return undefined;
    return why;
  });
}

function unfinished(store: Pick<RunReader, 'getJob' | 'getRun'>, m: OwnedMachine): boolean {
  const job = m.job ? store.getJob(asJobId(m.job)) : undefined;
  if (job) return !isFinal(job.status);
  const run = m.run ? store.getRun(m.run as RunName) : undefined;
  return run !== undefined && !isFinal(run.status);
}

async function sweepList(
  store: Pick<RunReader, 'getJob' | 'getRun'>,
  backend: Backend,
  machines: readonly OwnedMachine[],
  stale: (m: OwnedMachine) => string | undefined = (m) => staleBecause(store, m),
): Promise<SweepResult> {
  const swept: SweptMachine[] = [];
  const kept: OwnedMachine[] = [];
  const failed: (SweptMachine & { error: string })[] = [];
  await Promise.all(
    machines.map(async (m) => {
      const why = stale(m);
      if (why === undefined) return void kept.push(m);
      try {
        await backend.reap(m.handle);
        swept.push({ ...m, why });
      } catch (e) {
        failed.push({ ...m, why, error: e instanceof Error ? e.message : String(e) });
      }
    }),
  );
  const byId = (a: OwnedMachine, b: OwnedMachine): number => a.id.localeCompare(b.id);
  return { swept: swept.sort(byId), kept: kept.sort(byId), failed: failed.sort(byId) };
}
