/**
 * Leases on pool hosts (src/backends/ssh/lease.ts) against real OpenSSH servers (containers of
 * dstack-test/sshhost, see test/helpers/ssh-hosts.ts): slots held on the host, waiting for a free
 * one, separate processes contending, a holder killed with SIGKILL whose lease goes stale and is
 * taken over, abort, renewal. A test host's home is a folder of this machine (same path), so the
 * lease folders are inspected directly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { SshHostSpec } from '../../src/backends/ssh-host/host-spec.js';
import { connectHost, type SshConnection } from '../../src/backends/ssh-host/connect.js';
import { acquireHost, type Acquired, type LeaseHolder } from '../../src/backends/ssh-host/lease.js';
import { DstackError } from '../../src/engine/errors.js';
import { removeHost, startHost, sweepHosts, type TestHost } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';
import { until, watched } from '../helpers/wait.js';

const scratch = await mkdtemp(join(tmpdir(), 'dstack-ssh-lease-'));
const knownHosts = join(scratch, 'known_hosts');
const TTL = 2;
let keyPath = '';
const hostsMade: TestHost[] = [];
const children = new Set<ChildProcess>();
const connections = new Set<SshConnection>();

async function host(): Promise<TestHost> {
  const h = await startHost({ docker: false });
  hostsMade.push(h);
  keyPath = h.keyPath;
  return h;
}

const spec = (h: { user: string; host: string; port: number }): SshHostSpec => ({ user: h.user, host: h.host, port: h.port });

const connect = async (h: SshHostSpec): Promise<SshConnection> => {
  const c = await connectHost(h, { identity: keyPath, knownHostsPath: knownHosts, env: { HOME: join(scratch, 'home') } });
  connections.add(c);
  return c;
};

let holders = 0;
const holder = (tag = 'run'): LeaseHolder => {
  holders++;
  return { run: `${tag}-${holders}`, job: `${tag}-${holders}/wf`, pid: process.pid, hostname: 'test-machine' };
};

interface Options {
  readonly hosts: readonly TestHost[];
  readonly jobsPerHost: number;
  readonly signal?: AbortSignal;
  readonly notices?: string[];
  readonly onStale?: (stale: LeaseHolder, c: SshConnection) => Promise<void>;
  readonly holder?: LeaseHolder;
  readonly ttlSeconds?: number;
}

function acquire(o: Options): Promise<Acquired> {
  return acquireHost({
    hosts: o.hosts.map(spec),
    connect,
    jobsPerHost: o.jobsPerHost,
    holder: o.holder ?? holder(),
    ttlSeconds: o.ttlSeconds ?? TTL,
    signal: o.signal ?? AbortSignal.timeout(30_000),
    notify: (m) => o.notices?.push(m),
    ...(o.onStale ? { onStale: o.onStale } : {}),
  });
}

async function done(...acquired: (Acquired | undefined)[]): Promise<void> {
  for (const a of acquired) {
    if (!a) continue;
    await a.lease.release();
    await a.connection.close();
  }
}

const leasesDir = (h: TestHost): string => join(h.home, '.dstack', 'leases');
const entries = (h: TestHost): string[] => (existsSync(leasesDir(h)) ? readdirSync(leasesDir(h)).sort() : []);
const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves to 'pending' if `p` has not settled within `ms`. */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p, new Promise<'pending'>((res) => (timer = setTimeout(() => res('pending'), ms)))]);
  clearTimeout(timer);
  return r;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection, got success');
}

function worker(options: Record<string, unknown>): { child: ChildProcess; lines: AsyncIterableIterator<string>; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/lease-worker.ts', JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      children.delete(child);
      if (code) process.stderr.write(`lease worker ${child.pid} exited ${code}: ${err}\n`);
      resolve(code);
    }),
  );
  return { child, lines: createInterface({ input: child.stdout! })[Symbol.asyncIterator](), exited };
}

test.after(withTimeout(60_000, async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const c of connections) await c.close().catch(() => undefined);
  for (const h of hostsMade) await removeHost(h);
  await rm(scratch, { recursive: true, force: true });
}));

test(
  'acquire and release: a slot folder with the holder on the host; release is idempotent and removes it',
  withTimeout(30_000, async () => {
    const h = await host();
    const who = holder('one');
    const a = await acquire({ hosts: [h], jobsPerHost: 3, holder: who });
    try {
      assert.is(a.lease.slot, 0);
      assert.equal(spec(a.host), spec(h));
      assert.equal(entries(h), ['slot-0']);
      const written = JSON.parse(await readFile(join(leasesDir(h), 'slot-0', 'holder'), 'utf8')) as Record<string, unknown>;
      assert.equal({ run: written.run, job: written.job, pid: written.pid, hostname: written.hostname }, who);
      assert.match(String(written.token), /^[0-9a-f]{16}$/);
      assert.is((await readFile(join(leasesDir(h), 'slot-0', 'ttl'), 'utf8')).trim(), String(TTL * 1000));
      await a.lease.release();
      assert.equal(entries(h), []);
      await a.lease.release();
      // The connection stays the caller's, usable after the release.
      assert.is((await a.connection.exec('echo ok')).stdout.toString(), 'ok\n');
      // Released on a dead connection: no throw.
      const b = await acquire({ hosts: [h], jobsPerHost: 3 });
      await b.connection.close();
      await b.lease.release();
      assert.equal(entries(h), ['slot-0'], 'left to expire');
    } finally {
      await done(a);
    }
  }),
);

test(
  'jobsPerHost=1 on two hosts: two holders get different hosts, a third waits until one releases',
  withTimeout(40_000, async () => {
    const [h1, h2] = await Promise.all([host(), host()]);
    const notices: string[] = [];
    let a: Acquired | undefined, b: Acquired | undefined, c: Acquired | undefined;
    try {
      a = await acquire({ hosts: [h1!, h2!], jobsPerHost: 1 });
      b = await acquire({ hosts: [h1!, h2!], jobsPerHost: 1 });
      assert.equal([a.host.port, b.host.port], [h1!.port, h2!.port], 'pool order, then the other host');
      const third = watched(acquire({ hosts: [h1!, h2!], jobsPerHost: 1, notices }));
      await until('the busy notice', 20_000, () => notices.length > 0 || third.settled());
      assert.not.ok(third.settled(), 'the third holder waits');
      assert.equal(notices, ['all 2 hosts of the pool are busy; waiting for a free slot']);
      const released = Date.now();
      await b.lease.release();
      c = await third.promise;
      assert.is(c.host.port, h2!.port);
      // The holder it waited for is alive and renewing, so only the release can have freed the slot;
      // the bound is generous (polls are ≤ 1 s apart) because CI machines are noisy.
      assert.ok(Date.now() - released < 10_000, `took ${Date.now() - released} ms after the release`);
      assert.equal(notices.length, 1, 'announced once');
    } finally {
      await done(a, b, c);
    }
  }),
);

test(
  'load is spread: least leases held first, ties in pool order',
  withTimeout(40_000, async () => {
    const [h1, h2] = await Promise.all([host(), host()]);
    const got: Acquired[] = [];
    try {
      for (let i = 0; i < 4; i++) got.push(await acquire({ hosts: [h1!, h2!], jobsPerHost: 2 }));
      assert.equal(
        got.map((g) => [g.host.port, g.lease.slot]),
        [
          [h1!.port, 0],
          [h2!.port, 0],
          [h1!.port, 1],
          [h2!.port, 1],
        ],
      );
      // A host with one free slot of two comes after an empty one.
      await got[0]!.lease.release();
      await got[2]!.lease.release();
      await got[3]!.lease.release();
      const next = await acquire({ hosts: [h1!, h2!], jobsPerHost: 2 });
      got.push(next);
      assert.is(next.host.port, h1!.port);
    } finally {
      await done(...got);
    }
  }),
);

test(
  'jobsPerHost=2 on one host: two at once, a third waits until one releases',
  withTimeout(30_000, async () => {
    const h = await host();
    const notices: string[] = [];
    let a: Acquired | undefined, b: Acquired | undefined, c: Acquired | undefined;
    try {
      [a, b] = await Promise.all([acquire({ hosts: [h], jobsPerHost: 2 }), acquire({ hosts: [h], jobsPerHost: 2 })]);
      assert.equal([a.lease.slot, b.lease.slot].sort(), [0, 1]);
      const third = watched(acquire({ hosts: [h], jobsPerHost: 2, notices }));
      await until('the busy notice', 20_000, () => notices.length > 0 || third.settled());
      assert.not.ok(third.settled(), 'the third holder waits');
      assert.equal(notices, [`the pool's only host root@127.0.0.1:${h.port} is busy; waiting for a free slot`]);
      const freed = a.lease.slot;
      await a.lease.release();
      c = await third.promise;
      assert.is(c.lease.slot, freed);
      assert.equal(entries(h), ['slot-0', 'slot-1']);
    } finally {
      await done(a, b, c);
    }
  }),
);

test(
  'separate processes contending for one slot: never two holders at once',
  withTimeout(90_000, async () => {
    const h = await host();
    const startAt = Date.now() + 2500; // after every worker has loaded
    const workers = [0, 1, 2, 3].map((i) =>
      worker({
        mode: 'contend',
        host: spec(h),
        keyPath: h.keyPath,
        knownHostsPath: join(scratch, `known_hosts_w${i}`),
        jobsPerHost: 1,
        ttlSeconds: 5,
        run: `contend-${i}`,
        rounds: 3,
        holdMs: 150,
        startAt,
      }),
    );
    const intervals: { start: number; end: number; slot: number; alone: boolean }[] = [];
    await Promise.all(
      workers.map(async (w) => {
        for await (const line of w.lines) intervals.push(JSON.parse(line) as (typeof intervals)[number]);
        assert.is(await w.exited, 0);
      }),
    );
    assert.is(intervals.length, 12);
    assert.ok(intervals.every((i) => i.alone && i.slot === 0), JSON.stringify(intervals));
    intervals.sort((x, y) => x.start - y.start);
    for (let i = 1; i < intervals.length; i++) {
      assert.ok(intervals[i]!.start >= intervals[i - 1]!.end, `overlap: ${JSON.stringify(intervals[i - 1])} and ${JSON.stringify(intervals[i])}`);
    }
    assert.equal(entries(h), []);
  }),
);

test(
  'a holder killed with SIGKILL: its lease goes stale after the ttl, is taken over, and onStale gets the dead holder',
  withTimeout(40_000, async () => {
    const h = await host();
    const w = worker({ mode: 'hold', host: spec(h), keyPath: h.keyPath, knownHostsPath: join(scratch, 'known_hosts_hold'), jobsPerHost: 1, ttlSeconds: TTL, run: 'doomed' });
    const first = (await w.lines.next()).value as string;
    assert.equal(JSON.parse(first), { acquired: 0, pid: w.child.pid });
    // Held and renewed: a newcomer waits.
    const notices: string[] = [];
    const reaped: LeaseHolder[] = [];
    let blockedDuringReap: unknown;
    let waiter: Acquired | undefined;
    try {
      const early = acquire({ hosts: [h], jobsPerHost: 1, signal: AbortSignal.timeout(TTL * 1000 + 1000) });
      assert.instance(await rejection(early), DstackError, 'the living holder keeps its lease past the ttl');

      w.child.kill('SIGKILL');
      await w.exited;
      const killed = Date.now();
      waiter = await acquire({
        hosts: [h],
        jobsPerHost: 1,
        notices,
        onStale: async (stale, c) => {
          reaped.push(stale);
          assert.is((await c.exec('echo reaping')).stdout.toString(), 'reaping\n');
          // While we reap, the slot is ours: nobody else gets it.
          const other = acquire({ hosts: [h], jobsPerHost: 1, signal: AbortSignal.timeout(1000) });
          blockedDuringReap = await rejection(other);
          assert.ok(entries(h).some((e) => e.startsWith('reap-0-')), entries(h).join(' '));
        },
      });
      const waited = Date.now() - killed;
      // Issue 4: the next run does not wait for a dead lease longer than its expiry (plus polls and a
      // noisy machine's slack; a waiter that ignored expiry would wait forever).
      assert.ok(waited < TTL * 1000 + 8000, `waited ${waited} ms after the kill (ttl ${TTL} s)`);
      assert.is(waiter.lease.slot, 0);
      assert.equal(reaped, [{ run: 'doomed', job: `doomed/w${w.child.pid}-0`, pid: w.child.pid, hostname: reaped[0]?.hostname ?? '' }]);
      assert.ok(reaped[0]!.hostname.length > 0);
      assert.instance(blockedDuringReap, DstackError);
      assert.ok(notices.some((n) => n.startsWith(`took over a stale lease on root@127.0.0.1:${h.port} (slot 0, held by doomed/w${w.child.pid}-0 of pid ${w.child.pid}`)), notices.join('\n'));
      assert.equal(entries(h), ['slot-0'], 'the reap folder is gone');
      const now = JSON.parse(await readFile(join(leasesDir(h), 'slot-0', 'holder'), 'utf8')) as LeaseHolder;
      assert.is(now.pid, process.pid);
    } finally {
      await done(waiter);
    }
  }),
);

test(
  'a stale lease found by several takers at once is reaped exactly once',
  withTimeout(40_000, async () => {
    const h = await host();
    // A lease left by a dead holder long ago (by the host's clock: the folder is the host's).
    const slot = join(leasesDir(h), 'slot-0');
    await mkdir(slot, { recursive: true });
    await writeFile(join(slot, 'ttl'), '2000\n');
    await writeFile(join(slot, 'holder'), `${JSON.stringify({ run: 'old', job: 'old/wf', pid: 4242, hostname: 'gone-machine', token: 'feedfeedfeedfeed' })}\n`);
    const past = new Date(Date.now() - 60_000);
    await utimes(join(slot, 'holder'), past, past);
    const reaped: LeaseHolder[] = [];
    const onStale = async (s: LeaseHolder): Promise<void> => {
      reaped.push(s);
      await delay(300);
    };
    const ac = new AbortController();
    const notices = [0, 1, 2, 3].map((): string[] => []);
    const takers = notices.map((n) => acquire({ hosts: [h], jobsPerHost: 1, onStale, signal: ac.signal, notices: n }).then((a) => a, (e: unknown) => e));
    const winner = (await Promise.race(takers)) as Acquired;
    assert.ok(winner.lease, String(winner));
    // Every other taker has seen the slot held by the winner and waits.
    const busy = (n: string[]): boolean => n.some((m) => m.includes('is busy; waiting for a free slot'));
    await until('the other takers to wait', 20_000, () => notices.filter(busy).length === 3);
    ac.abort();
    const results = await Promise.all(takers);
    const won = results.filter((r): r is Acquired => !(r instanceof Error));
    try {
      assert.is(won.length, 1);
      assert.equal(reaped, [{ run: 'old', job: 'old/wf', pid: 4242, hostname: 'gone-machine' }]);
      for (const r of results) if (r instanceof Error) assert.is((r as DstackError).code, 'DS0400');
      assert.equal(entries(h), ['slot-0']);
    } finally {
      await done(...won);
    }
  }),
);

test(
  'an onStale that fails: announced, the reap is left to expire and retried after the ttl',
  withTimeout(40_000, async () => {
    const h = await host();
    const slot = join(leasesDir(h), 'slot-0');
    await mkdir(slot, { recursive: true });
    await writeFile(join(slot, 'holder'), `${JSON.stringify({ run: 'old', job: 'old/wf', pid: 77, hostname: 'gone-machine', token: 'feedfeedfeedfeed' })}\n`);
    const past = new Date(Date.now() - 60_000);
    await utimes(join(slot, 'holder'), past, past);
    const calls: number[] = [];
    const notices: string[] = [];
    const t0 = Date.now();
    const a = await acquire({
      hosts: [h],
      jobsPerHost: 1,
      notices,
      onStale: async (stale) => {
        calls.push(stale.pid);
        if (calls.length === 1) throw new Error('docker is not answering');
      },
    });
    try {
      assert.equal(calls, [77, 77]);
      assert.ok(Date.now() - t0 >= TTL * 1000, 'the second try waits for the first reap to expire');
      assert.ok(notices.some((n) => n === `could not clean up after the dead holder of slot 0 on root@127.0.0.1:${h.port}: docker is not answering`), notices.join('\n'));
      assert.is(a.lease.slot, 0);
      assert.equal(entries(h), ['slot-0']);
    } finally {
      await done(a);
    }
  }),
);

test(
  'abort while waiting rejects promptly (DS0400, or the reason given) and leaves nothing on the host',
  withTimeout(30_000, async () => {
    const h = await host();
    const a = await acquire({ hosts: [h], jobsPerHost: 1 });
    try {
      const ac = new AbortController();
      const notices: string[] = [];
      const waiting = acquire({ hosts: [h], jobsPerHost: 1, signal: ac.signal, notices });
      await until('the busy notice', 20_000, () => notices.length > 0);
      const t0 = Date.now();
      ac.abort();
      const e = await rejection(waiting);
      assert.ok(Date.now() - t0 < 3000, `aborting took ${Date.now() - t0} ms`);
      assert.instance(e, DstackError);
      assert.is((e as DstackError).code, 'DS0400');
      assert.is(notices.length, 1);

      const reason = new Error('stopped by the user');
      const ac2 = new AbortController();
      const notices2: string[] = [];
      const waiting2 = acquire({ hosts: [h], jobsPerHost: 1, signal: ac2.signal, notices: notices2 });
      await until('the busy notice', 20_000, () => notices2.length > 0);
      ac2.abort(reason);
      assert.is(await rejection(waiting2), reason);
      // Already aborted: rejects before connecting.
      assert.instance(await rejection(acquire({ hosts: [h], jobsPerHost: 1, signal: AbortSignal.abort() })), DstackError);
      assert.equal(entries(h), ['slot-0']);
    } finally {
      await done(a);
    }
  }),
);

test(
  'renewal keeps a lease fresh past several ttl periods; the waiter gets it on release',
  withTimeout(40_000, async () => {
    const h = await host();
    const a = await acquire({ hosts: [h], jobsPerHost: 1 });
    let b: Acquired | undefined;
    try {
      const waiting = acquire({ hosts: [h], jobsPerHost: 1 });
      assert.is(await settledWithin(waiting, TTL * 1000 * 3.5), 'pending');
      const age = Date.now() - (await stat(join(leasesDir(h), 'slot-0', 'holder'))).mtimeMs;
      assert.ok(age < TTL * 1000, `last renewed ${age} ms ago`);
      await a.lease.release();
      b = await waiting;
      assert.is(b.lease.slot, 0);
    } finally {
      await done(a, b);
    }
  }),
);

test(
  'a lease taken over behind its holder: renewal notices and stops, release leaves the new holder alone',
  withTimeout(30_000, async () => {
    const h = await host();
    const notices: string[] = [];
    const a = await acquire({ hosts: [h], jobsPerHost: 1, notices });
    try {
      // Someone else's lease now sits in slot 0 (as after a takeover).
      const other = `${JSON.stringify({ run: 'x', job: 'x/wf', pid: 1, hostname: 'other', token: '0123456789abcdef' })}\n`;
      await writeFile(join(leasesDir(h), 'slot-0', 'holder'), other);
      await until('the renewal to notice the takeover', 20_000, () => notices.some((n) => n.startsWith(`the lease on slot 0 of root@127.0.0.1:${h.port} was taken over`)));
      await a.lease.release();
      assert.is(await readFile(join(leasesDir(h), 'slot-0', 'holder'), 'utf8'), other);
    } finally {
      await done(a);
    }
  }),
);

test(
  'a host that cannot be reached is skipped with a notice; none reachable is the connection error',
  withTimeout(30_000, async () => {
    const h = await host();
    const dead = { ...h, port: 1 } as TestHost;
    const notices: string[] = [];
    const a = await acquire({ hosts: [dead, h], jobsPerHost: 1, notices });
    try {
      assert.is(a.host.port, h.port);
      assert.is(notices.length, 1);
      assert.match(notices[0]!, /^skipping root@127\.0\.0\.1:1 of the pool: cannot reach root@127\.0\.0\.1:1: connection refused/);
      const e = await rejection(acquire({ hosts: [dead], jobsPerHost: 1 }));
      assert.is((e as DstackError).code, 'DS0205');
    } finally {
      await done(a);
    }
  }),
);

test(
  'no test host is left behind',
  withTimeout(30_000, async () => {
    for (const h of hostsMade.splice(0)) await removeHost(h);
    assert.is(await sweepHosts(), 0);
  }),
);

test.run();
