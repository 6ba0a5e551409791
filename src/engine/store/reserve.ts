/**
 * A few MB of disk set aside in the dstack home (`store.reserve`, zeros) so that, when the disk is
 * full, dstack can still record how a job ended and delete runs — `rm` and `prune` are how a user
 * gets space back, and both must write to the store first. Given up by the write that needs it,
 * made again once there is ample room.
 */
import { existsSync, statfsSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const RESERVE_FILE = 'store.reserve';
/** Deleting a run with 300 MB of logs writes well under 1 MB of pages: freelist and pointer-map pages only. */
const RESERVE_BYTES = 4 << 20;
/** Made again only when the disk has this much free: never the write that fills it. */
const AMPLE_BYTES = 4 * RESERVE_BYTES;

/** Best effort: a home without its reserve works as before, only without the cushion. */
export function keepReserve(home: string): void {
  const path = join(home, RESERVE_FILE);
  try {
    if (existsSync(path)) return;
    const fs = statfsSync(home);
    if (fs.bavail * fs.bsize < AMPLE_BYTES) return;
    writeFileSync(path, Buffer.alloc(RESERVE_BYTES), { mode: 0o600 });
  } catch {
    // Read-only, full, or gone: there is nothing to keep.
  }
}

/** Frees the reserve; true when there was one to free (the caller may then retry its write once). */
export function releaseReserve(home: string): boolean {
  try {
    unlinkSync(join(home, RESERVE_FILE));
    return true;
  } catch {
    return false;
  }
}
