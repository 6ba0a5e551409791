/**
 * Launching with fallback: the offers in order, each in its zones in order, until one RunInstances
 * succeeds. What EC2 answers decides what comes next:
 *
 * - no capacity (`InsufficientInstanceCapacity`, …), a spot price too low (`SpotMaxPriceTooLow`), a
 *   type not offered in that zone (`Unsupported`): the next zone, then the next offer;
 * - a vCPU quota (`VcpuLimitExceeded`, `InstanceLimitExceeded`): every offer of the same quota bucket
 *   (EC2 counts vCPUs per bucket: standard, G, P, …) and market is skipped — they would fail alike;
 * - the spot instance quota (`MaxSpotInstanceCountExceeded`): every spot offer is skipped;
 * - throttling or an internal error: the same attempt again, twice at most, after a growing pause;
 * - anything else (a malformed request, a permission missing): stop at once, it would not get better.
 *
 * When nothing is left, DS0233 lists every attempt and why it failed.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { DstackError } from '../../engine/errors.js';
import { AwsApiError, type InstanceInfo } from './api.js';
import type { Market, Offer } from './offers.js';

export type FailureKind = 'capacity' | 'price' | 'unsupported' | 'quota' | 'spot-quota' | 'transient';

const KINDS: Readonly<Record<string, FailureKind>> = {
  InsufficientInstanceCapacity: 'capacity',
  InsufficientCapacity: 'capacity',
  InsufficientHostCapacity: 'capacity',
  InsufficientAddressCapacity: 'capacity',
  InsufficientFreeAddressesInSubnet: 'capacity',
  SpotMaxPriceTooLow: 'price',
  Unsupported: 'unsupported',
  VcpuLimitExceeded: 'quota',
  InstanceLimitExceeded: 'quota',
  MaxSpotInstanceCountExceeded: 'spot-quota',
  RequestLimitExceeded: 'transient',
  Throttling: 'transient',
  InternalError: 'transient',
  InternalFailure: 'transient',
  ServiceUnavailable: 'transient',
  Unavailable: 'transient',
};

export const failureKind = (code: string): FailureKind | undefined => KINDS[code];

/** EC2's vCPU quota buckets (Service Quotas: "Running On-Demand G and VT instances", …). */
export function quotaBucket(type: string): string {
  const family = type.split('.')[0]!.toLowerCase();
  for (const [prefix, bucket] of [['inf', 'Inf'], ['trn', 'Trn'], ['dl', 'DL'], ['vt', 'G'], ['g', 'G'], ['p', 'P'], ['f', 'F'], ['x', 'X']] as const) {
    if (family.startsWith(prefix)) return bucket;
  }
  return 'Standard';
}

export interface Attempt {
  readonly type: string;
  readonly market: Market;
  readonly zone: string;
  readonly code: string;
  readonly message: string;
}

export interface LaunchOutcome {
  readonly instance: InstanceInfo;
  readonly offer: Offer;
  readonly zone: string;
  /** The attempts that failed before this one. */
  readonly failed: readonly Attempt[];
}

export interface FallbackOptions {
  readonly offers: readonly Offer[];
  /** One RunInstances of `offer` in `zone`. */
  readonly launch: (offer: Offer, zone: string) => Promise<InstanceInfo>;
  readonly signal: AbortSignal;
  /** Told each failed attempt and what comes next. */
  readonly notify?: (message: string) => void;
  /** How many offers (instance types) of each market to try at most (default 5). */
  readonly maxOffersPerMarket?: number;
  /** Pause before retrying a throttled attempt, by retry number (default 1 s, 3 s). */
  readonly backoffMs?: (retry: number) => number;
  /** Region, for the final message. */
  readonly region: string;
}

const TRANSIENT_RETRIES = 2;
const oneLine = (s: string): string => s.replace(/\s+/g, ' ').trim();

/** One offer in one zone, retried through throttling; resolves with the instance or the failure. */
async function attemptOnce(o: FallbackOptions, offer: Offer, zone: string): Promise<InstanceInfo | Attempt> {
  for (let retry = 0; ; retry++) {
    o.signal.throwIfAborted();
    try {
      return await o.launch(offer, zone);
    } catch (e) {
      if (!(e instanceof AwsApiError)) throw e;
      const kind = failureKind(e.code);
      if (kind === undefined) {
        throw new DstackError('DS0234', `EC2 refused to launch ${offer.type} (${offer.market}) in ${zone}: ${e.code}: ${oneLine(e.message)}`, {
          hint: 'this will not get better by trying other instance types; check the remote\'s configuration (`dstack config list`) and the account\'s EC2 permissions',
        });
      }
      if (kind === 'transient' && retry < TRANSIENT_RETRIES) {
        await delay(o.backoffMs?.(retry) ?? 1000 * (1 + 2 * retry), undefined, { signal: o.signal });
        continue;
      }
      return { type: offer.type, market: offer.market, zone, code: e.code, message: oneLine(e.message) };
    }
  }
}

/** How many offers (instance types) of each market are tried, by default. */
export const OFFERS_PER_MARKET = 5;

/** The offers to try: the first `max` of each market, in the given order. */
export function capped(offers: readonly Offer[], max = OFFERS_PER_MARKET): Offer[] {
  const seen = new Map<Market, number>();
  return offers.filter((o) => {
    const n = (seen.get(o.market) ?? 0) + 1;
    seen.set(o.market, n);
    return n <= max;
  });
}

/** One line per offer and answer: `  g4dn.xlarge (spot) in us-east-1a, us-east-1b: CODE: message`. */
function summary(failed: readonly Attempt[]): string[] {
  const lines: { key: string; zones: string[]; a: Attempt }[] = [];
  for (const a of failed) {
    const key = `${a.type}/${a.market}/${a.code}`;
    const last = lines.at(-1);
    if (last?.key === key) last.zones.push(a.zone);
    else lines.push({ key, zones: [a.zone], a });
  }
  return lines.map(({ zones, a }) => `  ${a.type} (${a.market}) in ${zones.join(', ')}: ${a.code}: ${a.message}`);
}

export async function launchWithFallback(o: FallbackOptions): Promise<LaunchOutcome> {
  const failed: Attempt[] = [];
  const skippedBuckets = new Set<string>();
  let noSpot = false;
  const offers = capped(o.offers, o.maxOffersPerMarket ?? OFFERS_PER_MARKET);
  for (const offer of offers) {
    const bucket = `${offer.market}:${quotaBucket(offer.type)}`;
    if (skippedBuckets.has(bucket) || (noSpot && offer.market === 'spot')) continue;
    for (const zone of offer.zones) {
      const r = await attemptOnce(o, offer, zone);
      if (!('code' in r)) return { instance: r, offer, zone, failed };
      failed.push(r);
      const kind = failureKind(r.code);
      if (kind === 'quota') skippedBuckets.add(bucket);
      if (kind === 'spot-quota') noSpot = true;
      o.notify?.(`${offer.type} (${offer.market}) in ${zone}: ${r.code}; ${kind === 'quota' || kind === 'spot-quota' ? 'skipping offers under the same quota' : 'trying the next zone or offer'}`);
      if (kind === 'quota' || kind === 'spot-quota') break;
    }
  }
  const more = o.offers.length > offers.length ? `\n  (${o.offers.length - offers.length} more offers not tried)` : '';
  throw new DstackError('DS0233', `no instance could be launched in ${o.region}; tried ${failed.length} ${failed.length === 1 ? 'time' : 'times'}:\n${summary(failed).join('\n')}${more}`, {
    hint: 'try again later, in another region (`dstack config aws --name NAME --region R --force`), with other resources, or allow on-demand when the job is interruptible',
  });
}
