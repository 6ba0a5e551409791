/**
 * Offers (src/backends/aws/offers.ts): from resources to instance types, cheapest first, spot before
 * the on-demand fallback, with the zones to try in order. The facts are the shapes EC2 describes
 * (vCPUs, memory, GPUs) for real types; prices from the shipped table and the given spot history.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { InstanceTypeInfo, SpotPrice } from '../../src/backends/aws/api.js';
import { describeResources, formatGpu, formatPrice, misfit, offersFor, onDemandPrice, pricedTypes, type OfferFacts } from '../../src/backends/aws/offers.js';
import type { Resources } from '../../src/engine/types.js';

const GiB = 1024 ** 3;
const x86 = ['x86_64'];
const both = { spot: true, onDemand: true };
const TYPES: InstanceTypeInfo[] = [
  { type: 't3.medium', vcpus: 2, memoryMiB: 4096, architectures: x86, ...both },
  { type: 't3.large', vcpus: 2, memoryMiB: 8192, architectures: x86, ...both },
  { type: 'm5.xlarge', vcpus: 4, memoryMiB: 16384, architectures: x86, ...both },
  { type: 'c6a.large', vcpus: 2, memoryMiB: 4096, architectures: x86, ...both },
  { type: 'g4dn.xlarge', vcpus: 4, memoryMiB: 16384, gpu: { count: 1, name: 'T4', manufacturer: 'NVIDIA', memoryMiB: 16384 }, architectures: x86, ...both },
  { type: 'g5.xlarge', vcpus: 4, memoryMiB: 16384, gpu: { count: 1, name: 'A10G', manufacturer: 'NVIDIA', memoryMiB: 24576 }, architectures: x86, ...both },
  { type: 'g4dn.12xlarge', vcpus: 48, memoryMiB: 196608, gpu: { count: 4, name: 'T4', manufacturer: 'NVIDIA', memoryMiB: 16384 }, architectures: x86, ...both },
  { type: 'm6g.xlarge', vcpus: 4, memoryMiB: 16384, architectures: ['arm64'], ...both },
];
const ZONES = ['us-east-1a', 'us-east-1b', 'us-east-1c'];
const facts = (spotPrices: SpotPrice[] = [], extra: Partial<OfferFacts> = {}): OfferFacts => ({
  region: 'us-east-1',
  types: TYPES,
  zones: new Map(TYPES.map((t) => [t.type, ZONES])),
  spotPrices,
  ...extra,
});
const onDemandOnly = { spot: false, onDemandFallback: true };
const names = (r: Resources, f = facts(), policy = onDemandOnly): string[] => offersFor(r, f, policy).map((o) => `${o.type}/${o.market}`);

test('no resources asked: at least 2 vCPUs and 8 GiB, no GPU type, cheapest first', () => {
  assert.equal(names({}), ['t3.large/on-demand', 'm5.xlarge/on-demand']);
});

test('cpu and memory are lower bounds', () => {
  assert.equal(names({ cpu: 4, memory: 12 * GiB }), ['m5.xlarge/on-demand']);
  // $0.0416, $0.0765, $0.0832, $0.192
  assert.equal(names({ cpu: 2, memory: 2 * GiB }), ['t3.medium/on-demand', 'c6a.large/on-demand', 't3.large/on-demand', 'm5.xlarge/on-demand']);
});

test('GPUs: count, name (any case, dashes and spaces ignored) and memory per GPU', () => {
  assert.equal(names({ gpu: { count: 1 } }), ['g4dn.xlarge/on-demand', 'g5.xlarge/on-demand', 'g4dn.12xlarge/on-demand']);
  assert.equal(names({ gpu: { count: 1, name: 'a10g' } }), ['g5.xlarge/on-demand']);
  assert.equal(names({ gpu: { count: 1, name: 'A-10 G' } }), ['g5.xlarge/on-demand']);
  assert.equal(names({ gpu: { count: 1, memory: 20 * GiB } }), ['g5.xlarge/on-demand']);
  assert.equal(names({ gpu: { count: 2 } }), ['g4dn.12xlarge/on-demand']);
  assert.equal(names({ gpu: { count: 1, name: 'H100' } }), []);
});

test('misfit says why, for messages', () => {
  const t3 = TYPES[0]!;
  assert.is(misfit(t3, { cpu: 4 }), '2 vCPUs < 4');
  assert.is(misfit(TYPES[7]!, {}), 'not x86_64');
  assert.is(misfit(TYPES[4]!, {}), 'has GPUs, the job asks for none');
  assert.is(misfit(TYPES[4]!, { gpu: { count: 1, name: 'A100' } }), 'GPU T4, not A100');
  assert.is(misfit(TYPES[2]!, { gpu: { count: 1 } }), 'no NVIDIA GPU');
});

test('interruptible: spot offers by their cheapest zone, zones cheapest first, then the on-demand fallback', () => {
  const spot: SpotPrice[] = [
    { type: 'g4dn.xlarge', zone: 'us-east-1a', price: 0.2 },
    { type: 'g4dn.xlarge', zone: 'us-east-1c', price: 0.16 },
    { type: 'g5.xlarge', zone: 'us-east-1b', price: 0.3 },
  ];
  const offers = offersFor({ gpu: { count: 1 } }, facts(spot), { spot: true, onDemandFallback: true });
  assert.equal(offers.map((o) => `${o.type}/${o.market}@${o.zones.join(',')}=${o.price}`), [
    'g4dn.xlarge/spot@us-east-1c,us-east-1a=0.16',
    'g5.xlarge/spot@us-east-1b=0.3',
    'g4dn.xlarge/on-demand@us-east-1a,us-east-1b,us-east-1c=0.526',
    'g5.xlarge/on-demand@us-east-1a,us-east-1b,us-east-1c=1.006',
    'g4dn.12xlarge/on-demand@us-east-1a,us-east-1b,us-east-1c=3.912',
  ]);
  const noFallback = offersFor({ gpu: { count: 1 } }, facts(spot), { spot: true, onDemandFallback: false });
  assert.equal(noFallback.map((o) => o.market), ['spot', 'spot']);
});

test('zones: only those that offer the type, and only the subnet\'s when one is set', () => {
  const f = facts([], { zones: new Map([['t3.large', ['us-east-1b']], ['m5.xlarge', ZONES]]), onlyZones: ['us-east-1c'] });
  assert.equal(offersFor({}, f, onDemandOnly).map((o) => `${o.type}@${o.zones.join(',')}`), ['m5.xlarge@us-east-1c']);
});

test('a region without its own table uses us-east-1 figures, marked as estimates', () => {
  assert.equal(onDemandPrice('us-east-1', 'g4dn.xlarge'), { price: 0.526, estimate: false });
  assert.equal(onDemandPrice('eu-west-1', 'g4dn.xlarge'), { price: 0.526, estimate: true });
  assert.is(onDemandPrice('us-east-1', 'zz.huge'), undefined);
  const [first] = offersFor({}, facts([], { region: 'eu-west-1' }), onDemandOnly);
  assert.is(formatPrice(first!), '~$0.0832/h');
  assert.ok(pricedTypes('eu-west-1').includes('g4dn.xlarge'));
});

test('formatting: prices, GPUs and what was asked', () => {
  assert.is(formatPrice({ price: 0.526, estimate: false }), '$0.526/h');
  assert.is(formatPrice({ price: 0.00001, estimate: false }), '$0.000010/h');
  assert.is(formatGpu({ count: 1, name: 'T4', manufacturer: 'NVIDIA', memoryMiB: 16384 }), '1x T4 (16 GiB)');
  assert.is(formatGpu(undefined), '-');
  assert.is(describeResources({ cpu: 4, gpu: { count: 2, name: 'A10G', memory: 20 * GiB } }), '4 vCPUs, 8 GiB, 2x A10G GPUs with 20 GiB each');
});

test.run();
