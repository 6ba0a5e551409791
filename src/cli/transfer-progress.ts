/**
 * The progress bar of `push` and `pull` on a terminal: objects, bytes, rate and time left, redrawn
 * at most ten times a second on one line of stderr. Off a terminal it prints nothing (the summary
 * line, or `--json`, says what was sent).
 */
import type { TransferProgress } from '../remote-store/transfer.js';
import { formatBytes, formatDuration } from './format.js';

const WIDTH = 24;

export interface ProgressBar {
  readonly update: (p: TransferProgress) => void;
  /** Clears the line. */
  readonly done: () => void;
}

export function progressBar(stderr: NodeJS.WritableStream & { isTTY?: boolean }, verb: string): ProgressBar {
  if (!stderr.isTTY) return { update: () => undefined, done: () => undefined };
  const started = Date.now();
  let last = 0;
  let drawn = false;
  return {
    update: (p) => {
      const now = Date.now();
      if (now - last < 100 && p.bytesDone < p.bytes) return;
      last = now;
      const secs = Math.max(0.001, (now - started) / 1000);
      const rate = p.bytesDone / secs;
      const left = rate > 0 ? ((p.bytes - p.bytesDone) / rate) * 1000 : undefined;
      const filled = p.bytes > 0 ? Math.round((WIDTH * p.bytesDone) / p.bytes) : WIDTH;
      const bar = `[${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}]`;
      stderr.write(
        `\r\x1b[K${verb} ${bar} ${p.objectsDone}/${p.objects} objects, ${formatBytes(p.bytesDone)} / ${formatBytes(p.bytes)}, ${formatBytes(rate)}/s${left === undefined ? '' : `, ${formatDuration(left)} left`}`,
      );
      drawn = true;
    },
    done: () => {
      if (drawn) stderr.write('\r\x1b[K');
    },
  };
}
