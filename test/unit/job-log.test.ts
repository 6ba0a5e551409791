/** A job's output: shown live in full, stored up to the limit (head, marker, latest tail), masked, and a store fault reported once. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import { JobLog } from '../../src/engine/job-log.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { LogStream, Store } from '../../src/engine/store/types.js';
import type { JobId } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';

function withJob(fn: (store: Store, job: JobId, run: string) => void): () => void {
  return () => {
    const dir = mkdtempSync(join(tmpdir(), 'dstack-joblog-'));
    const store = openStore(join(dir, 'home'));
    try {
      const { run, jobs } = store.runs.createRun({
        workflow: 'a',
        owner: 'o',
        backend: 'local',
        repo: { root: '/p', isGit: false },
        args: [],
        jobs: [{ spec: jobSpec({ workflow: 'a' }), deps: [] }],
      });
      fn(store, jobs[0]!.id, run.name);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const stored = (store: Store, run: string): string => [...store.logs.readLogs(run)].map((r) => r.data.toString()).join('');
const noFault = (e: unknown): void => assert.unreachable(`store fault: ${String(e)}`);
const line = (i: number): string => `line ${String(i).padStart(5, '0')} ${'x'.repeat(40)}\n`;

test(
  'under the limit everything is stored as it came; the terminal sees the same bytes',
  withJob((store, job, run) => {
    const live: string[] = [];
    const log = new JobLog({ logs: store.logs, job, limit: 1 << 20, secrets: [], live: (_s, d) => live.push(d.toString()), onFault: noFault });
    for (let i = 0; i < 100; i++) log.write('stdout', Buffer.from(line(i)));
    log.close();
    const all = Array.from({ length: 100 }, (_, i) => line(i)).join('');
    assert.is(live.join(''), all);
    assert.is(stored(store, run), all);
  }),
);

test(
  'past the limit: the first half and the latest half are kept, with a marker at the cut; live output is complete',
  withJob((store, job, run) => {
    const limit = 8 * 1024;
    let liveBytes = 0;
    const log = new JobLog({ logs: store.logs, job, limit, secrets: [], live: (_s, d) => (liveBytes += d.length), onFault: noFault });
    const n = 2000; // 100 kB of output
    for (let i = 0; i < n; i++) log.write(i % 7 ? 'stdout' : 'stderr', Buffer.from(line(i)));
    log.close();
    assert.is(liveBytes, n * line(0).length);
    const text = stored(store, run);
    const marker = /\n\[dstack: this job printed more than the 8 KiB of output kept per job \(DSTACK_LOG_LIMIT\): the first 4 KiB and the last 4 KiB are kept, the middle was only shown live\]\n/;
    assert.match(text, marker);
    const [head, tail] = text.split(marker) as [string, string];
    assert.ok(head.startsWith(line(0)), 'the start is kept');
    assert.ok(head.length <= limit / 2, `head ${head.length}`);
    assert.ok(tail.endsWith(line(n - 1)), 'the end is kept');
    assert.ok(tail.length <= limit / 2 + line(0).length, `tail ${tail.length}`);
    assert.ok(tail.length >= limit / 2 - line(0).length, `tail ${tail.length}`);
    assert.not.ok(text.includes(line(n / 2)), 'the middle is not');
    const rows = [...store.logs.readLogs(run)];
    assert.ok(rows.every((r, i) => i === 0 || r.seq > rows[i - 1]!.seq), 'seqs still increase: logs -f keeps its place');
  }),
);

test(
  'a limit of 0 keeps only the marker; unlimited keeps everything',
  withJob((store, job, run) => {
    const none = new JobLog({ logs: store.logs, job, limit: 0, secrets: [], live: () => undefined, onFault: noFault });
    none.write('stdout', Buffer.from('hello\n'));
    none.write('stdout', Buffer.from('world\n'));
    none.close();
    assert.is(stored(store, run), '[dstack: output is not kept (DSTACK_LOG_LIMIT is 0); it was only shown live]\n');
    store.logs.dropLogs(job, 0, 1e9);
    const all = new JobLog({ logs: store.logs, job, limit: Infinity, secrets: [], live: () => undefined, onFault: noFault });
    const big = Buffer.alloc(3 << 20, 'y');
    all.write('stdout', big);
    all.close();
    assert.is(stored(store, run).length, big.length);
  }),
);

test(
  'secrets are masked before the store and the terminal see the output, across chunks',
  withJob((store, job, run) => {
    const live: string[] = [];
    const log = new JobLog({ logs: store.logs, job, limit: 1 << 20, secrets: ['tok-secret-1'], live: (_s, d) => live.push(d.toString()), onFault: noFault });
    log.write('stdout', Buffer.from('key=tok-sec'));
    log.write('stdout', Buffer.from('ret-1 done\n'));
    log.close();
    assert.is(live.join(''), 'key=*** done\n');
    assert.is(stored(store, run), 'key=*** done\n');
  }),
);

test(
  'a store that fails (a full disk) stops the storing, not the output, and the fault is reported once',
  withJob((store, job) => {
    const faults: unknown[] = [];
    let live = 0;
    let calls = 0;
    const full = {
      appendLog: (j: JobId, s: LogStream, d: Buffer): number => {
        if (++calls > 3) throw new DstackError('DS0320', 'the disk holding the run store is full: /x/store.db');
        return store.logs.appendLog(j, s, d);
      },
      dropLogs: store.logs.dropLogs.bind(store.logs),
    };
    const log = new JobLog({ logs: full, job, limit: 1 << 20, secrets: [], live: () => live++, onFault: (e) => faults.push(e) });
    for (let i = 0; i < 10; i++) log.write('stdout', Buffer.from(line(i)));
    log.close();
    assert.is(live, 10);
    assert.is(faults.length, 1);
    assert.is((faults[0] as DstackError).code, 'DS0320');
    assert.is(calls, 4, 'no write after the first failure');
  }),
);

test.run();
