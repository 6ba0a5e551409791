/**
 * `run -d`: the run goes on in a supervisor process of the same binary, with no terminal. The code
 * snapshot is already in the artifact store (the run records its manifest), so later edits in the
 * work tree cannot leak into the run and nothing needs copying here.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { RunRecord } from '../engine/store/types.js';
import type { Session } from './session.js';

export const runDir = (home: string, run: string): string => join(home, 'runs', run);

/** How to start this same program again (a script under node, or a single binary). */
export function selfCommand(): { command: string; args: string[] } {
  const script = process.argv[1];
  const isSea = script === undefined || script === process.execPath;
  return { command: process.execPath, args: isSea ? [] : [script] };
}

export async function detachRun(options: {
  session: Session;
  run: RunRecord;
  cache: { readonly rerun?: boolean; readonly reuse?: boolean };
}): Promise<void> {
  const { session, run, cache } = options;
  const dir = runDir(session.home, run.name);
  mkdirSync(dir, { recursive: true });
  const log = openSync(join(dir, 'supervisor.log'), 'a', 0o600);
  const self = selfCommand();
  const flags = [...(cache.rerun ? ['--rerun'] : []), ...(cache.reuse ? ['--reuse'] : [])];
  const child = spawn(self.command, [...self.args, '_supervise', run.name, ...flags], {
    detached: true,
    stdio: ['ignore', log, log],
    env: process.env,
  });
  closeSync(log);
  if (child.pid === undefined) throw new Error('could not start the supervisor process');
  (await session.store()).runs.setRunOwnerProcess(run.name, child.pid, hostname());
  child.unref();
}
