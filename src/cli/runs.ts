import { DstackError } from '../engine/errors.js';
import type { RunReader, RunRecord } from '../engine/store/types.js';

/** The run a command names; an unknown name is DS0101 with how to list runs. */
export function requireRun(store: { readonly runs: Pick<RunReader, 'getRun'> }, name: string, hint = 'list runs with `dstack ps -a`'): RunRecord {
  const run = store.runs.getRun(name);
  if (!run) throw new DstackError('DS0101', `no run named '${name}'`, { hint });
  return run;
}
