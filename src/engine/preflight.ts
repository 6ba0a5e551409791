/**
 * Before anything costs money: can the backend run every job of the run at all (`supports`, pure),
 * and only then are its credentials and connectivity in order (`check`) — in that order, so that a
 * job the backend cannot run is reported as such, with the backend's reason, even when its
 * credentials are missing too (skypilot's clouds declare what they cannot do the same way).
 */
import type { Backend } from './backend.js';
import { DstackError } from './errors.js';
import type { JobSpec } from './types.js';

/** DS0213 (exit 2) naming every job the backend cannot run and why. */
export function assertSupported(backend: Backend, jobs: readonly { readonly workflow: string; readonly spec: JobSpec }[]): void {
  const refused: string[] = [];
  for (const job of jobs) {
    const c = backend.supports(job.spec);
    if (!c.ok) refused.push(`${job.workflow}: ${c.reason}`);
  }
  if (refused.length === 0) return;
  const message =
    refused.length === 1 ? `${backend.id} cannot run ${refused[0]}` : `${backend.id} cannot run ${refused.length} jobs of this run:\n${refused.map((r) => `  ${r}`).join('\n')}`;
  throw new DstackError('DS0213', message, {
    hint: 'ask for what this backend offers, or run elsewhere: `--remote NAME` (see `dstack config list`), or without --remote',
  });
}

/** `supports` for every job, then `check`. */
export async function preflight(backend: Backend, jobs: readonly { readonly workflow: string; readonly spec: JobSpec }[], signal: AbortSignal): Promise<void> {
  assertSupported(backend, jobs);
  await backend.check(signal);
}
