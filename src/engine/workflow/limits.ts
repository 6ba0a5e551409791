/**
 * Bounds a real machine could satisfy, checked when a workflow is loaded (and for the same values
 * given on the command line), so an impossible value is a located error and never reaches the
 * engine: `ports: 1e9` made dstack grow to 3.4 GB before Docker was asked anything, and
 * `memory: 0.0000001MB` rounded to 0, which Docker reads as "no limit" (issue 8).
 */
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const TiB = 2 ** 40;

export const LIMITS = {
  /** Workflow names become folder names (`<run>_<workflow>`) and labels: far below NAME_MAX (255). */
  nameLength: 128,
  /** Ports published per job; dstack 0.7 apps used one to three. */
  ports: 100,
  /** Resubmissions of an interrupted job: each is a new instance, paid for. */
  retry: 10,
  /** Docker takes CPUs in units of 1e-9 and refuses less than 0.01; the largest machines have under 1,024 vCPUs. */
  cpu: { min: 0.01, max: 1024 },
  /** Docker's smallest memory limit is 6 MiB; the largest machines sold have 32 TiB. */
  memory: { min: 6 * MiB, max: 32 * TiB },
  /** A `/dev/shm` of 0 bytes is read by Docker as "the default, 64 MB": refuse sizes that round to nothing. */
  shmSize: { min: MiB, max: 32 * TiB },
  /** GPUs in one machine: 8 in the largest cloud types, 16 in a few. */
  gpuCount: 16,
  /** Memory of one GPU: under 300 GB in the largest made. */
  gpuMemory: { min: MiB, max: 512 * GiB },
} as const;

/** `what` is between `min` and `max` (inclusive), or a sentence saying which bound it breaks. */
export function outOfBounds(value: number, min: number, max: number, show: (n: number) => string = String): string | undefined {
  if (!Number.isFinite(value)) return 'it is not a finite number';
  if (value < min) return `the least is ${show(min)}`;
  if (value > max) return `the most is ${show(max)}`;
  return undefined;
}

/** Bytes as the limits above are written (binary units), for messages. */
export function showBytes(n: number): string {
  for (const [unit, size] of [['TiB', TiB], ['GiB', GiB], ['MiB', MiB]] as const) if (n >= size && n % size === 0) return `${n / size}${unit}`;
  return `${n} bytes`;
}
