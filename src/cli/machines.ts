/**
 * Machines that cost money (a cloud's instances), for the commands that talk to a cloud: `run
 * --remote` sweeps its backend before it launches anything, `prune --remote` sweeps every cloud
 * remote and lists what it ended, `ps` sweeps and shows what still runs. Sweeping is the engine's
 * (engine/sweep.ts); this is which remotes, and the words.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend, OwnedMachine } from '../engine/backend.js';
import type { RunReader } from '../engine/store/types.js';
import type { SweepResult } from '../engine/sweep.js';
import { table } from './format.js';
import type { Session } from './session.js';

export interface RemoteSweep {
  /** `aws:team`. */
  readonly backend: string;
  readonly result?: SweepResult;
  /** The cloud could not be asked (offline, no credentials): nothing was swept there. */
  readonly error?: string;
}

/**
 * The backends of the configured remotes whose machines cost money (all, or the one named). Cheap
 * when there is no config.json: nothing is loaded.
 */
export async function machineBackends(session: Session, only?: string): Promise<Backend[]> {
  if (!existsSync(join(session.home, 'config.json'))) return [];
  const { registry } = await import('../backends/index.js');
  const cfg = await registry.remotes(session.home).read();
  const ids = cfg.remotes.filter((r) => registry.find(r.kind)?.ownsMachines && (only === undefined || r.name === only)).map((r) => `${r.kind}:${r.name}`);
  const backends = await Promise.all(ids.map((id) => session.reachable(id)));
  return backends.filter((b): b is Backend => b !== undefined && typeof b.owned === 'function');
}

/** Sweeps each backend (in parallel, each within `timeoutMs`); a cloud that cannot be asked is reported, not thrown. */
export async function sweepBackends(store: RunReader, backends: readonly Backend[], timeoutMs = 30_000): Promise<RemoteSweep[]> {
  const { sweepMachines } = await import('../engine/sweep.js');
  return Promise.all(
    backends.map(async (b): Promise<RemoteSweep> => {
      try {
        const result = await Promise.race([
          sweepMachines(store, b),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs).unref()),
        ]);
        return { backend: b.id, result };
      } catch (e) {
        return { backend: b.id, error: e instanceof Error ? e.message : String(e) };
      }
    }),
  );
}

/**
 * This home's leftovers on `backend` (a local engine's containers by label, job folders) that no
 * live run holds, removed, one line each on `stderr`. Never throws: an engine that cannot be asked
 * now is asked by the next command.
 */
export async function sweepLeftoversOf(store: Pick<RunReader, 'getJob' | 'getRun'>, backend: Backend, stderr: NodeJS.WritableStream): Promise<void> {
  if (!backend.leftovers) return;
  const { sweepLeftovers } = await import('../engine/sweep.js');
  const result = await sweepLeftovers(store, backend).catch(() => undefined);
  for (const m of result?.swept ?? []) stderr.write(`Removed ${m.id} (${backend.id}), left behind: ${m.why}\n`);
  for (const m of result?.failed ?? []) stderr.write(`Could not remove ${m.id} (${backend.id}), left behind: ${m.why}: ${m.error}\n`);
}

/** Whether this home has job folders: the sign that a local sweep may find something. */
export const hasJobFolders = (home: string): boolean => {
  try {
    return readdirSync(join(home, 'jobs')).length > 0;
  } catch {
    return false;
  }
};

/** One line per machine ended (or that could not be), for stderr. */
export function sweptLines(sweeps: readonly RemoteSweep[]): string[] {
  const out: string[] = [];
  for (const s of sweeps) {
    for (const m of s.result?.swept ?? []) out.push(`Terminated ${m.id} (${s.backend}): ${m.why}`);
    for (const m of s.result?.failed ?? []) out.push(`Could not terminate ${m.id} (${s.backend}), ${m.why}: ${m.error}`);
  }
  return out;
}

/** `INSTANCE REMOTE STATE JOB DETAIL` rows. */
export function machineTable(rows: readonly { readonly backend: string; readonly machine: OwnedMachine; readonly note?: string }[]): string {
  return table(
    ['INSTANCE', 'REMOTE', 'STATE', 'JOB', 'DETAIL'],
    rows.map((r) => [r.machine.id, r.backend, r.machine.state, r.machine.job ?? '', [r.machine.detail, r.note].filter(Boolean).join('; ')]),
  );
}
