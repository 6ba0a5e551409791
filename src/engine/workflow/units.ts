/**
 * Sizes for `memory`, `shm_size`, `gpu.memory` and the matching command-line flags.
 *
 * Decimal units (`KB`, `MB`, `GB`, `TB`) are powers of 1000 and binary units (`KiB` … `TiB`) powers
 * of 1024, as in the brief; `B` is bytes. Units are case-insensitive (`16gb`) and may follow a space
 * and a fraction (`1.5 GB`). A bare number is refused on purpose: `memory: 8` meaning 8 bytes (as
 * Docker reads it) is never what a person means, and guessing GB would be a silent misreading.
 * Single letters (`8G`) are refused too, because Docker reads them as binary and Kubernetes as decimal.
 */
const UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

export const SIZE_HINT = 'expected a number and a unit, e.g. 512MB, 16GB, 8GiB (MB/GB decimal, MiB/GiB binary)';

/** Bytes (rounded down), or undefined when `text` is not a size with a unit. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]+)\s*$/.exec(text);
  if (!m) return undefined;
  const factor = UNITS[m[2]!.toLowerCase()];
  if (factor === undefined) return undefined;
  const bytes = Math.floor(Number(m[1]) * factor);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
