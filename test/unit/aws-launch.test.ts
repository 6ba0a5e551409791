/**
 * The launch fallback (src/backends/aws/launch.ts), driven by a scripted `launch` that throws the
 * AwsApiErrors EC2's answers become (the real replies, through the real SDK, are the fault-proxy
 * integration tests'): which attempt follows which failure, and the final error's list.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AwsApiError, type InstanceInfo } from '../../src/backends/aws/api.js';
import { launchWithFallback, quotaBucket } from '../../src/backends/aws/launch.js';
import type { Offer } from '../../src/backends/aws/offers.js';
import { DstackError } from '../../src/engine/errors.js';
import { withTimeout } from '../helpers/timeout.js';

const offer = (type: string, market: 'spot' | 'on-demand', zones: string[]): Offer => ({ type, market, price: 1, estimate: false, zones, vcpus: 4, memoryMiB: 16384 });
const OFFERS = [
  offer('g4dn.xlarge', 'spot', ['us-east-1a', 'us-east-1b']),
  offer('g5.xlarge', 'spot', ['us-east-1a']),
  offer('g4dn.xlarge', 'on-demand', ['us-east-1a', 'us-east-1b']),
  offer('p3.2xlarge', 'on-demand', ['us-east-1a']),
];

/** Each key `type/market@zone` answers with its error, or an instance when absent. */
function scripted(errors: Record<string, [string, number] | [string, number][]>) {
  const tried: string[] = [];
  const counts = new Map<string, number>();
  return {
    tried,
    launch: async (o: Offer, zone: string): Promise<InstanceInfo> => {
      const key = `${o.type}/${o.market}@${zone}`;
      tried.push(key);
      const n = counts.get(key) ?? 0;
      counts.set(key, n + 1);
      const e = errors[key];
      const answer = Array.isArray(e?.[0]) ? (e as [string, number][])[n] : (e as [string, number] | undefined);
      if (answer) throw new AwsApiError(answer[0], `${answer[0]} message`, answer[1]);
      return { id: `i-${tried.length}`, state: 'pending', type: o.type, zone, spot: o.market === 'spot', tags: {} };
    },
  };
}

const run = (s: ReturnType<typeof scripted>, offers = OFFERS, notes: string[] = []) =>
  launchWithFallback({ offers, launch: s.launch, signal: new AbortController().signal, region: 'us-east-1', backoffMs: () => 0, notify: (m) => notes.push(m) });

test('no capacity in a zone: the next zone of the same offer', withTimeout(5000, async () => {
  const s = scripted({ 'g4dn.xlarge/spot@us-east-1a': ['InsufficientInstanceCapacity', 500] });
  const r = await run(s);
  assert.equal(s.tried, ['g4dn.xlarge/spot@us-east-1a', 'g4dn.xlarge/spot@us-east-1b']);
  assert.is(r.zone, 'us-east-1b');
  assert.equal(r.failed.map((a) => a.code), ['InsufficientInstanceCapacity']);
}));

test('spot price too low and unsupported: next zone, then next offer, then on-demand', withTimeout(5000, async () => {
  const s = scripted({
    'g4dn.xlarge/spot@us-east-1a': ['SpotMaxPriceTooLow', 400],
    'g4dn.xlarge/spot@us-east-1b': ['Unsupported', 400],
    'g5.xlarge/spot@us-east-1a': ['InsufficientInstanceCapacity', 500],
  });
  const notes: string[] = [];
  const r = await run(s, OFFERS, notes);
  assert.equal(s.tried, ['g4dn.xlarge/spot@us-east-1a', 'g4dn.xlarge/spot@us-east-1b', 'g5.xlarge/spot@us-east-1a', 'g4dn.xlarge/on-demand@us-east-1a']);
  assert.is(r.offer.market, 'on-demand');
  assert.is(notes[0], 'g4dn.xlarge (spot) in us-east-1a: SpotMaxPriceTooLow; trying the next zone or offer');
}));

test('a vCPU quota skips every offer of the same bucket and market', withTimeout(5000, async () => {
  const s = scripted({ 'g4dn.xlarge/spot@us-east-1a': ['VcpuLimitExceeded', 400] });
  await run(s);
  // g5 is in the same G bucket for spot: skipped; on-demand G has its own quota.
  assert.equal(s.tried, ['g4dn.xlarge/spot@us-east-1a', 'g4dn.xlarge/on-demand@us-east-1a']);
}));

test('the spot instance count quota skips every spot offer', withTimeout(5000, async () => {
  const s = scripted({ 'g4dn.xlarge/spot@us-east-1a': ['MaxSpotInstanceCountExceeded', 400] });
  await run(s);
  assert.equal(s.tried, ['g4dn.xlarge/spot@us-east-1a', 'g4dn.xlarge/on-demand@us-east-1a']);
}));

test('throttling: the same attempt again, twice at most, then the next', withTimeout(5000, async () => {
  const s = scripted({ 'g4dn.xlarge/spot@us-east-1a': [['RequestLimitExceeded', 503], ['InternalError', 500]] });
  const r = await run(s);
  assert.equal(s.tried, ['g4dn.xlarge/spot@us-east-1a', 'g4dn.xlarge/spot@us-east-1a', 'g4dn.xlarge/spot@us-east-1a']);
  assert.equal(r.failed, []);
  const always = scripted({ 'g4dn.xlarge/spot@us-east-1a': [['RequestLimitExceeded', 503], ['RequestLimitExceeded', 503], ['RequestLimitExceeded', 503]] });
  const r2 = await run(always);
  assert.is(always.tried.length, 4);
  assert.is(r2.zone, 'us-east-1b');
}));

test('an error that no fallback cures stops at once with DS0234', withTimeout(5000, async () => {
  const s = scripted({ 'g4dn.xlarge/spot@us-east-1a': ['InvalidParameterValue', 400] });
  const e = await run(s).catch((x: unknown) => x);
  assert.instance(e, DstackError);
  assert.is((e as DstackError).code, 'DS0234');
  assert.is((e as DstackError).message, 'EC2 refused to launch g4dn.xlarge (spot) in us-east-1a: InvalidParameterValue: InvalidParameterValue message');
  assert.equal(s.tried, ['g4dn.xlarge/spot@us-east-1a']);
}));

test('nothing left: DS0233 lists every attempt and why', withTimeout(5000, async () => {
  const ice: [string, number] = ['InsufficientInstanceCapacity', 500];
  const s = scripted(Object.fromEntries(OFFERS.flatMap((o) => o.zones.map((z) => [`${o.type}/${o.market}@${z}`, ice]))));
  const e = (await run(s).catch((x: unknown) => x)) as DstackError;
  assert.is(e.code, 'DS0233');
  assert.is(
    e.message,
    [
      'no instance could be launched in us-east-1; tried 6 times:',
      '  g4dn.xlarge (spot) in us-east-1a, us-east-1b: InsufficientInstanceCapacity: InsufficientInstanceCapacity message',
      '  g5.xlarge (spot) in us-east-1a: InsufficientInstanceCapacity: InsufficientInstanceCapacity message',
      '  g4dn.xlarge (on-demand) in us-east-1a, us-east-1b: InsufficientInstanceCapacity: InsufficientInstanceCapacity message',
      '  p3.2xlarge (on-demand) in us-east-1a: InsufficientInstanceCapacity: InsufficientInstanceCapacity message',
    ].join('\n'),
  );
}));

test('an abort stops the fallback between attempts', withTimeout(5000, async () => {
  const ac = new AbortController();
  let calls = 0;
  const launch = async (o: Offer, z: string): Promise<InstanceInfo> => {
    calls++;
    ac.abort(new Error('stop'));
    throw new AwsApiError('InsufficientInstanceCapacity', `none in ${z} for ${o.type}`, 500);
  };
  const e = await launchWithFallback({ offers: OFFERS, launch, signal: ac.signal, region: 'us-east-1' }).catch((x: unknown) => x);
  assert.is((e as Error).message, 'stop');
  assert.is(calls, 1);
}));

test('at most so many offers of each market are tried; the rest are counted', withTimeout(5000, async () => {
  const many = [...'abcdefg'].map((c) => offer(`m${c}.large`, 'spot', ['us-east-1a'])).concat([offer('t3.large', 'on-demand', ['us-east-1a'])]);
  const s = scripted(Object.fromEntries(many.map((o) => [`${o.type}/${o.market}@us-east-1a`, ['InsufficientInstanceCapacity', 500] as [string, number]])));
  const e = (await launchWithFallback({ offers: many, launch: s.launch, signal: new AbortController().signal, region: 'us-east-1', maxOffersPerMarket: 3 }).catch((x: unknown) => x)) as DstackError;
  assert.equal(s.tried, ['ma.large/spot@us-east-1a', 'mb.large/spot@us-east-1a', 'mc.large/spot@us-east-1a', 't3.large/on-demand@us-east-1a']);
  assert.match(e.message, /\n {2}\(4 more offers not tried\)$/);
}));

test('quota buckets as EC2 counts them', () => {
  assert.equal(['t3.large', 'm5.xlarge', 'c6i.large', 'r5.large', 'g4dn.xlarge', 'g5.xlarge', 'p3.2xlarge', 'p4d.24xlarge', 'inf2.xlarge', 'dl1.24xlarge', 'x2idn.large'].map(quotaBucket), [
    'Standard', 'Standard', 'Standard', 'Standard', 'G', 'G', 'P', 'P', 'Inf', 'DL', 'X',
  ]);
});

test.run();
