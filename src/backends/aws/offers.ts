/**
 * From a job's `resources` to the instance offers dstack would try, cheapest first. Pure: the EC2
 * facts (types, zones, spot prices) come in as data.
 *
 * What fits: x86_64 (the AMIs dstack picks are x86_64); at least the vCPUs and memory asked for, or
 * 2 vCPUs and 8 GiB when nothing is asked (Docker and a Python job need that much to be useful); for
 * a GPU job, NVIDIA GPUs (the NVIDIA container toolkit is what the bootstrap sets up) — at least
 * `count`, of `name` when given (`T4`, `a10g`: case, spaces and dashes do not matter), with at least
 * `memory` each; a job without GPUs never gets a GPU type. Only the types of the shipped price table
 * (prices-data.ts) are offered: an offer without a price cannot be ranked.
 *
 * Order: when the job is interruptible, spot offers first (by their cheapest zone's current price),
 * then — unless the remote forbids it — the on-demand offers as a fallback; otherwise on-demand only.
 */
import type { Resources } from '../../engine/types.js';
import type { GpuInfo, InstanceTypeInfo, SpotPrice } from './api.js';
import { ON_DEMAND } from './prices-data.js';

export type Market = 'spot' | 'on-demand';

export interface Offer {
  readonly type: string;
  readonly market: Market;
  /** USD per hour: the cheapest zone's spot price, or the on-demand price. */
  readonly price: number;
  /** The price comes from another region's table (this region has none shipped). */
  readonly estimate: boolean;
  /** The zones to try, in order (cheapest first for spot). */
  readonly zones: readonly string[];
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly gpu?: GpuInfo;
}

export interface OfferPolicy {
  /** Spot offers first (the job is `interruptible`). */
  readonly spot: boolean;
  /** With `spot`: on-demand offers after the spot ones. */
  readonly onDemandFallback: boolean;
}

export const DEFAULT_VCPUS = 2;
export const DEFAULT_MEMORY_BYTES = 8 * 1024 ** 3;
const MIB = 1024 ** 2;
const BASE_REGION = 'us-east-1';

/** The types whose prices are known: what to ask EC2 about. */
export function pricedTypes(region: string): string[] {
  return Object.keys(ON_DEMAND[region] ?? ON_DEMAND[BASE_REGION] ?? {});
}

/** The on-demand price of `type` in `region`, and whether it is another region's figure. */
export function onDemandPrice(region: string, type: string): { readonly price: number; readonly estimate: boolean } | undefined {
  const own = ON_DEMAND[region]?.[type];
  if (own !== undefined) return { price: own, estimate: false };
  const base = ON_DEMAND[BASE_REGION]?.[type];
  return base === undefined ? undefined : { price: base, estimate: true };
}

const normalise = (name: string): string => name.toLowerCase().replace(/[\s_-]/g, '');


/** Why `t` does not fit, or undefined when it does. */
export function misfit(t: InstanceTypeInfo, r: Resources): string | undefined {
  if (!t.architectures.includes('x86_64')) return 'not x86_64';
  const cpu = r.cpu ?? DEFAULT_VCPUS;
  if (t.vcpus < cpu) return `${t.vcpus} vCPUs < ${cpu}`;
  const memory = r.memory ?? DEFAULT_MEMORY_BYTES;
  if (t.memoryMiB * MIB < memory) return `${t.memoryMiB} MiB < ${Math.ceil(memory / MIB)} MiB`;
  const want = r.gpu && r.gpu.count > 0 ? r.gpu : undefined;
  if (!want) return t.gpu ? 'has GPUs, the job asks for none' : undefined;
  if (!t.gpu || normalise(t.gpu.manufacturer) !== 'nvidia') return 'no NVIDIA GPU';
  if (t.gpu.count < want.count) return `${t.gpu.count} GPUs < ${want.count}`;
  if (want.name && normalise(t.gpu.name) !== normalise(want.name)) return `GPU ${t.gpu.name}, not ${want.name}`;
  if (want.memory && t.gpu.memoryMiB * MIB < want.memory) return `${t.gpu.memoryMiB} MiB of GPU memory < ${Math.ceil(want.memory / MIB)} MiB`;
  return undefined;
}

export interface OfferFacts {
  readonly region: string;
  readonly types: readonly InstanceTypeInfo[];
  /** type → zones that offer it. */
  readonly zones: ReadonlyMap<string, readonly string[]>;
  readonly spotPrices: readonly SpotPrice[];
  /** Only these zones (a configured subnet's). */
  readonly onlyZones?: readonly string[];
}

const byPrice = (a: Offer, b: Offer): number => a.price - b.price || a.vcpus - b.vcpus || a.type.localeCompare(b.type);

/** The offers for `resources`, in the order to try them. */
export function offersFor(resources: Resources, facts: OfferFacts, policy: OfferPolicy): Offer[] {
  const spot: Offer[] = [];
  const onDemand: Offer[] = [];
  const allowed = (z: string): boolean => !facts.onlyZones || facts.onlyZones.includes(z);
  for (const t of facts.types) {
    if (misfit(t, resources) !== undefined) continue;
    const od = onDemandPrice(facts.region, t.type);
    const zones = (facts.zones.get(t.type) ?? []).filter(allowed);
    if (!od || zones.length === 0) continue;
    const shape = { type: t.type, vcpus: t.vcpus, memoryMiB: t.memoryMiB, ...(t.gpu ? { gpu: t.gpu } : {}) };
    if (t.onDemand) onDemand.push({ ...shape, market: 'on-demand', price: od.price, estimate: od.estimate, zones });
    if (policy.spot && t.spot) {
      const prices = facts.spotPrices.filter((p) => p.type === t.type && zones.includes(p.zone)).sort((a, b) => a.price - b.price || a.zone.localeCompare(b.zone));
      if (prices.length > 0) spot.push({ ...shape, market: 'spot', price: prices[0]!.price, estimate: false, zones: prices.map((p) => p.zone) });
    }
  }
  spot.sort(byPrice);
  onDemand.sort(byPrice);
  if (!policy.spot) return onDemand;
  return policy.onDemandFallback ? [...spot, ...onDemand] : spot;
}

/** `$0.526/h`, `~$0.526/h` for an estimate. */
export const formatPrice = (o: Pick<Offer, 'price' | 'estimate'>): string => `${o.estimate ? '~' : ''}$${o.price < 0.01 ? o.price.toPrecision(2) : o.price.toFixed(4).replace(/0{1,2}$/, '')}/h`;

/** `1x T4 (16 GiB)`, or `-`. */
export const formatGpu = (gpu: GpuInfo | undefined): string => (gpu ? `${gpu.count}x ${gpu.name} (${Math.round(gpu.memoryMiB / 1024)} GiB)` : '-');

/** What the job asked for, in words, for "no type fits" messages. */
export function describeResources(r: Resources): string {
  const parts = [`${r.cpu ?? DEFAULT_VCPUS} vCPUs`, `${Math.ceil((r.memory ?? DEFAULT_MEMORY_BYTES) / 1024 ** 3)} GiB`];
  if (r.gpu && r.gpu.count > 0) {
    parts.push(`${r.gpu.count}x ${r.gpu.name ?? 'NVIDIA'} GPU${r.gpu.count > 1 ? 's' : ''}${r.gpu.memory ? ` with ${Math.ceil(r.gpu.memory / 1024 ** 3)} GiB each` : ''}`);
  }
  return parts.join(', ');
}
