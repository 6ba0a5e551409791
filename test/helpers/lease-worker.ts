/**
 * Child process for test/integration/ssh-lease.test.ts:
 *   node --import tsx test/helpers/lease-worker.ts '<json options>'
 * Options: {mode: 'contend' | 'hold', host: {user, host, port}, keyPath, knownHostsPath, jobsPerHost,
 * ttlSeconds, run, rounds?, holdMs?, startAt?}.
 *
 * `contend`: waits until `startAt`, then `rounds` times takes a lease on the host, checks on the
 * host that nobody else is inside (an atomic `mkdir` of `~/.lease-excl`), holds it `holdMs`, and
 * releases it; prints one JSON line per round: {start, end, slot, alone}.
 * `hold`: takes a lease, prints {acquired: slot, pid}, and holds it until killed.
 */
import { hostname } from 'node:os';
import { connectHost } from '../../src/backends/ssh-host/connect.js';
import type { SshHostSpec } from '../../src/backends/ssh-host/host-spec.js';
import { acquireHost } from '../../src/backends/ssh-host/lease.js';

interface Options {
  readonly mode: 'contend' | 'hold';
  readonly host: SshHostSpec;
  readonly keyPath: string;
  readonly knownHostsPath: string;
  readonly jobsPerHost: number;
  readonly ttlSeconds: number;
  readonly run: string;
  readonly rounds?: number;
  readonly holdMs?: number;
  readonly startAt?: number;
}

const o = JSON.parse(process.argv[2] ?? '') as Options;
const connect = (h: SshHostSpec) => connectHost(h, { identity: o.keyPath, knownHostsPath: o.knownHostsPath, env: { HOME: '/nonexistent' } });
const holder = (i: number) => ({ run: o.run, job: `${o.run}/w${process.pid}-${i}`, pid: process.pid, hostname: hostname() });
const signal = new AbortController().signal;

if (o.mode === 'hold') {
  const { lease } = await acquireHost({ hosts: [o.host], connect, jobsPerHost: o.jobsPerHost, ttlSeconds: o.ttlSeconds, holder: holder(0), signal });
  process.stdout.write(`${JSON.stringify({ acquired: lease.slot, pid: process.pid })}\n`);
  setInterval(() => undefined, 1 << 30);
} else {
  const wait = (o.startAt ?? 0) - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  for (let i = 0; i < (o.rounds ?? 1); i++) {
    const { lease, connection } = await acquireHost({ hosts: [o.host], connect, jobsPerHost: o.jobsPerHost, ttlSeconds: o.ttlSeconds, holder: holder(i), signal });
    const start = Date.now();
    const sleep = ((o.holdMs ?? 100) / 1000).toFixed(3);
    const inside = await connection.exec(`mkdir "$HOME/.lease-excl" 2>/dev/null || { echo crowded; exit 0; }; sleep ${sleep}; rmdir "$HOME/.lease-excl"; echo alone`);
    const end = Date.now();
    await lease.release();
    await connection.close();
    process.stdout.write(`${JSON.stringify({ start, end, slot: lease.slot, alone: inside.stdout.toString().trim() === 'alone' })}\n`);
  }
}
