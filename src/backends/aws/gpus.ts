/**
 * The NVIDIA GPUs of the shipped price table's families (prices-data.ts), and the most of each one
 * instance type has: enough to refuse, with no network, a job no type could run.
 */
const normalise = (name: string): string => name.toLowerCase().replace(/[\s_-]/g, '');

const GPUS: Readonly<Record<string, number>> = { T4: 8, A10G: 8, L4: 8, L40S: 8, V100: 8, A100: 8 };

/** Pure: can any type of the shipped table have `count` GPUs of `name`? */
export function knownGpu(name: string | undefined, count: number): { readonly ok: true } | { readonly ok: false; readonly reason: string } {
  const most = name === undefined ? Math.max(...Object.values(GPUS)) : Object.entries(GPUS).find(([n]) => normalise(n) === normalise(name))?.[1];
  if (most === undefined) return { ok: false, reason: `no instance type dstack offers has ${name} GPUs (it offers ${Object.keys(GPUS).join(', ')})` };
  if (count > most) return { ok: false, reason: `no instance type has more than ${most} ${name ?? 'GPUs'}${name ? ' GPUs' : ''} (asked for ${count})` };
  return { ok: true };
}
