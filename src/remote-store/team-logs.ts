/**
 * Job logs in the team bucket: `repos/<repo>/logs/<run>/<job>-<part>.ndjson`, one JSON line per
 * chunk of output (`{"t": ms, "s": "o"|"e", "d": text}`, or `"b"` with base64 for bytes that are
 * not UTF-8), cut into parts of a few MiB so neither side holds a big log in memory and a remote run
 * can add parts as it goes.
 */
import { DstackError } from '../engine/errors.js';
import { logKey } from './layout.js';
import type { TeamRun } from './records.js';
import type { TeamStore } from './team-store.js';

export interface TeamLogRecord {
  readonly job: number;
  readonly workflow: string;
  readonly stream: 'stdout' | 'stderr';
  readonly at: number;
  readonly data: Buffer;
}

/** A part is closed when it reaches this many bytes. */
const PART_BYTES = 4 * 1024 * 1024;

function line(r: { readonly stream: 'stdout' | 'stderr'; readonly at: number; readonly data: Buffer }): string {
  const text = r.data.toString('utf8');
  const s = r.stream === 'stderr' ? 'e' : 'o';
  return Buffer.from(text, 'utf8').equals(r.data) ? JSON.stringify({ t: r.at, s, d: text }) : JSON.stringify({ t: r.at, s, b: r.data.toString('base64') });
}

/** Writes a job's log records as parts from `firstPart` on; returns how many parts the job has now. */
export async function putJobLog(
  store: TeamStore,
  target: { readonly repo: string; readonly run: string; readonly job: number },
  records: Iterable<{ readonly stream: 'stdout' | 'stderr'; readonly at: number; readonly data: Buffer }>,
  firstPart = 0,
  signal?: AbortSignal,
): Promise<number> {
  let part = firstPart;
  let lines: string[] = [];
  let bytes = 0;
  const flush = async (): Promise<void> => {
    if (lines.length === 0) return;
    await store.bucket.write(logKey(target.repo, target.run, target.job, part), Buffer.from(`${lines.join('\n')}\n`), signal ? { signal } : {});
    part++;
    lines = [];
    bytes = 0;
  };
  for (const r of records) {
    const l = line(r);
    lines.push(l);
    bytes += l.length + 1;
    if (bytes >= PART_BYTES) await flush();
  }
  await flush();
  return part;
}

/** A run's log records, job by job in order, part by part. */
export async function* readRunLog(store: TeamStore, run: TeamRun, signal?: AbortSignal): AsyncGenerator<TeamLogRecord> {
  for (const job of run.jobs) {
    for (let part = 0; part < (job.logParts ?? 0); part++) {
      const key = logKey(run.repo.id, run.name, job.index, part);
      const body = await store.bucket.read(key, signal);
      if (!body) {
        throw new DstackError('DS0264', `part ${part} of the log of ${run.name}/${job.workflow} is missing from ${store.where}`, { hint: `push the run again: dstack push ${run.name}` });
      }
      for (const l of body.toString('utf8').split('\n')) {
        if (!l) continue;
        let o: { t?: unknown; s?: unknown; d?: unknown; b?: unknown };
        try {
          o = JSON.parse(l) as typeof o;
        } catch {
          throw new DstackError('DS0266', `part ${part} of the log of ${run.name}/${job.workflow} in ${store.where} is damaged`, { hint: `push the run again: dstack push ${run.name}` });
        }
        const data = typeof o.d === 'string' ? Buffer.from(o.d, 'utf8') : typeof o.b === 'string' ? Buffer.from(o.b, 'base64') : Buffer.alloc(0);
        yield { job: job.index, workflow: job.workflow, stream: o.s === 'e' ? 'stderr' : 'stdout', at: typeof o.t === 'number' ? o.t : 0, data };
      }
    }
  }
}
