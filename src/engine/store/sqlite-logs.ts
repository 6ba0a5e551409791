/**
 * Job output on SQLite: one row per chunk, keyed (job, seq). Reading merges the jobs' rows page by
 * page, so `dstack logs` of a run of any size holds a few pages per job, never the whole log.
 */
import type { JobId } from '../types.js';
import { asJobId } from '../types.js';
import type { Connection } from './connection.js';
import type { LogRecord, LogStream } from './records.js';
import type { LogStore } from './types.js';

/** Rows per job read at a time: a row is one chunk of the output stream (32 kB frames from the Docker engine), so about a MB. */
const PAGE = 32;

interface LogRow {
  seq: number;
  at: number;
  stream: string;
  data: Buffer;
}

interface Cursor {
  readonly job: JobId;
  readonly workflow: string;
  readonly idx: number;
  after: number;
  rows: LogRow[];
  next: number;
  exhausted: boolean;
}

export class SqliteLogs implements LogStore {
  private readonly s;

  constructor(private readonly c: Connection) {
    const p = (sql: string) => c.prepare(sql);
    this.s = {
      // One statement, so the write lock is held from reading max(seq) to the insert: correct even
      // if two processes ever appended to the same job.
      append: p(
        `INSERT INTO logs (job, seq, at, stream, data)
         SELECT @job, coalesce(max(seq), 0) + 1, @at, @stream, @data FROM logs WHERE job = @job
         RETURNING seq`,
      ).pluck(),
      drop: p('DELETE FROM logs WHERE job = ? AND seq BETWEEN ? AND ?'),
      jobs: p('SELECT id, workflow, idx FROM jobs WHERE run = ? ORDER BY idx'),
      page: p(`SELECT seq, at, stream, data FROM logs WHERE job = ? AND seq > ? AND at >= ? ORDER BY seq LIMIT ${PAGE}`),
    };
  }

  /**
   * Stepped to the end with all(), not get(): in autocommit the commit happens when the statement
   * finishes, and get() on a RETURNING statement resets it after the first row, dropping a failed
   * commit's error — a full disk then lost rows without a word (seen on a full tmpfs).
   */
  appendLog(job: JobId, stream: LogStream, data: Buffer, at: number = this.c.now()): number {
    return this.c.guard(() => this.s.append.all({ job, stream, data, at })[0] as number);
  }

  dropLogs(job: JobId, from: number, to: number): void {
    this.c.guard(() => this.s.drop.run(job, from, to));
  }

  /**
   * Records ordered by (time, job index, seq): each job's rows come in seq order, a page at a time,
   * and the earliest head among the jobs goes next. Pages are separate reads, so a job writing
   * meanwhile is never blocked and what it appends shows up.
   */
  *readLogs(run: string, options: { readonly sinceMs?: number; readonly after?: ReadonlyMap<JobId, number> } = {}): Iterable<LogRecord> {
    const since = options.sinceMs ?? Number.MIN_SAFE_INTEGER;
    const jobs = this.c.guard(() => this.s.jobs.all(run)) as { id: string; workflow: string; idx: number }[];
    const cursors: Cursor[] = jobs.map((j) => {
      const job = asJobId(j.id);
      return { job, workflow: j.workflow, idx: j.idx, after: options.after?.get(job) ?? 0, rows: [], next: 0, exhausted: false };
    });
    const head = (k: Cursor): LogRow | undefined => {
      if (k.next === k.rows.length && !k.exhausted) {
        k.rows = this.c.guard(() => this.s.page.all(k.job, k.after, since)) as LogRow[];
        k.next = 0;
        k.exhausted = k.rows.length < PAGE;
        if (k.rows.length) k.after = k.rows[k.rows.length - 1]!.seq;
      }
      return k.rows[k.next];
    };
    for (;;) {
      let best: Cursor | undefined;
      let bestRow: LogRow | undefined;
      for (const k of cursors) {
        const r = head(k);
        if (r && (!bestRow || r.at < bestRow.at || (r.at === bestRow.at && k.idx < best!.idx))) {
          best = k;
          bestRow = r;
        }
      }
      if (!best || !bestRow) return;
      best.next++;
      yield { seq: bestRow.seq, job: best.job, workflow: best.workflow, stream: bestRow.stream as LogStream, at: bestRow.at, data: bestRow.data };
    }
  }
}
