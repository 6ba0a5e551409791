/** `DSTACK_LOG_LIMIT`: how much of each job's output the store keeps (the terminal always sees all of it). */
import { DstackError } from '../engine/errors.js';
import { DEFAULT_LOG_LIMIT } from '../engine/job-log.js';
import { parseSize, SIZE_HINT } from '../engine/workflow/units.js';

/** Bytes per job: a size (`64MiB`), `0` to keep none, `unlimited` to keep all; unset: DEFAULT_LOG_LIMIT. */
export function logLimitFrom(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.DSTACK_LOG_LIMIT?.trim();
  if (text === undefined || text === '') return DEFAULT_LOG_LIMIT;
  if (text === '0') return 0;
  if (text.toLowerCase() === 'unlimited') return Infinity;
  const bytes = parseSize(text);
  if (bytes === undefined) {
    throw new DstackError('DS0120', `DSTACK_LOG_LIMIT must be a size, 0 or unlimited, got '${text}'`, {
      hint: `${SIZE_HINT}; e.g. DSTACK_LOG_LIMIT=256MiB`,
    });
  }
  return bytes;
}
