/**
 * Nothing that costs money outlives its run. Every command that talks to a cloud first asks it for
 * this dstack home's machines (`Backend.owned`) and ends each one no live run holds: its job is over,
 * or not in this home at all, or the dstack process that ran it is gone. A machine of a job whose
 * run is supervised by a live process — this one or another on this host — is left alone, as is a
 * run supervised on another host, whose liveness this process cannot tell (its dead-man switch ends
 * it if that dstack is gone).
 */
import type { Backend, OwnedMachine } from './backend.js';
import { supervisorGone } from './reconcile.js';
import type { RunReader } from './store/types.js';
import { asJobId, isFinal } from './types.js';

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
  if (!m.job) return 'it names no job';
  const job = store.getJob(asJobId(m.job));
  if (!job) return `its job ${m.job} is not in this dstack home`;
  if (isFinal(job.status)) return `its job ${m.job} ended ${job.status}`;
  const run = store.getRun(job.run);
  if (!run) return `the run of ${m.job} is not in this dstack home`;
  if (supervisorGone(run)) return `the dstack process that ran ${m.job} (pid ${run.pid}) is gone`;
  return undefined;
}

export async function sweepMachines(store: Pick<RunReader, 'getJob' | 'getRun'>, backend: Backend): Promise<SweepResult> {
  if (!backend.owned) return { swept: [], kept: [], failed: [] };
  const swept: SweptMachine[] = [];
  const kept: OwnedMachine[] = [];
  const failed: (SweptMachine & { error: string })[] = [];
  await Promise.all(
    (await backend.owned()).map(async (m) => {
      const why = staleBecause(store, m);
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
