/**
 * `DSTACK_ARTIFACT_LIMIT`: the most one artifact outside /workflow may hold. An environment can be
 * tens of GB, but a job that writes /dev/zero under /opt/x must not fill the disk of the dstack home:
 * the archive reader (archive.ts) refuses the artifact on the first header that would pass it.
 */
import { DstackError } from '../../engine/errors.js';
import { parseSize, SIZE_HINT } from '../../engine/workflow/units.js';

/** Room for a large Conda environment with CUDA libraries (10–20 GB), and then some. */
export const DEFAULT_ARTIFACT_LIMIT = 50 * 1024 ** 3;

/** Bytes per artifact outside /workflow: a size (`100GiB`) or `unlimited`; unset: DEFAULT_ARTIFACT_LIMIT. */
export function artifactLimitFrom(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.DSTACK_ARTIFACT_LIMIT?.trim();
  if (text === undefined || text === '') return DEFAULT_ARTIFACT_LIMIT;
  if (text.toLowerCase() === 'unlimited') return Infinity;
  const bytes = parseSize(text);
  if (bytes === undefined) {
    throw new DstackError('DS0046', `DSTACK_ARTIFACT_LIMIT must be a size or unlimited, got '${text}'`, {
      hint: `${SIZE_HINT}; e.g. DSTACK_ARTIFACT_LIMIT=100GiB`,
    });
  }
  return bytes;
}

/** Binary units, as the limit is usually given (50 GiB). */
export function formatLimit(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return `${+n.toFixed(1)} ${units[i]}`;
}
