/**
 * A job's output on its way out: secrets masked per stream (across chunks), then shown live in
 * full and stored up to a limit per job. Past the limit the store keeps the first half and the
 * latest half, with a marker where the middle was cut: the start says what the job set out to do,
 * the end how it failed. A store that cannot take more (a full disk) stops the storing, never the
 * output; the fault is reported once, so the executor can end the job with it.
 */
import type { RunningJob } from './backend.js';
import type { LogStore, LogStream } from './store/types.js';
import { StreamMasker } from './secrets.js';
import type { JobId } from './types.js';

/** Default bytes of output kept per job (DSTACK_LOG_LIMIT). */
export const DEFAULT_LOG_LIMIT = 32 * 1024 * 1024;

export interface JobLogOptions {
  readonly logs: Pick<LogStore, 'appendLog' | 'dropLogs'>;
  readonly job: JobId;
  /** Bytes kept per job; Infinity keeps everything, 0 nothing but the marker. */
  readonly limit: number;
  /** Values to mask. */
  readonly secrets: readonly string[];
  /** Every byte, masked, as it comes. */
  readonly live: (stream: LogStream, data: Buffer) => void;
  /** The first error the store threw; storing stops after it. */
  readonly onFault: (error: unknown) => void;
}

export class JobLog {
  private readonly maskers: Readonly<Record<LogStream, StreamMasker>>;
  private readonly store: CappedLog;

  constructor(o: JobLogOptions) {
    this.store = new CappedLog(o);
    const masker = (stream: LogStream): StreamMasker =>
      new StreamMasker(o.secrets, (data) => {
        this.store.append(stream, data);
        o.live(stream, data);
      });
    this.maskers = { stdout: masker('stdout'), stderr: masker('stderr') };
  }

  write(stream: LogStream, chunk: Buffer): void {
    this.maskers[stream].write(chunk);
  }

  /** Lets out what masking held back. Call when the job's output has ended. */
  close(): void {
    this.maskers.stdout.close();
    this.maskers.stderr.close();
  }
}

/** Binary units, as DSTACK_LOG_LIMIT is usually given (32MiB). */
function size(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return `${+n.toFixed(1)} ${units[i]}`;
}

/** The storing half of JobLog: head, marker, and a tail whose oldest rows are dropped as it grows. */
class CappedLog {
  private readonly head: number;
  private readonly tail: number;
  private stored = 0;
  private cut = false;
  private failed = false;
  /** Rows after the marker, oldest first. */
  private readonly tailRows: { seq: number; bytes: number }[] = [];
  private tailBytes = 0;

  constructor(private readonly o: JobLogOptions) {
    this.head = Math.floor(o.limit / 2);
    this.tail = o.limit - this.head;
  }

  append(stream: LogStream, data: Buffer): void {
    if (this.failed || data.length === 0) return;
    try {
      if (!this.cut) {
        const room = this.head - this.stored;
        if (data.length <= room || this.o.limit === Infinity) {
          this.o.logs.appendLog(this.o.job, stream, data);
          this.stored += data.length;
          return;
        }
        if (room > 0) this.o.logs.appendLog(this.o.job, stream, data.subarray(0, room));
        this.o.logs.appendLog(this.o.job, 'stderr', Buffer.from(this.marker()));
        this.cut = true;
        data = data.subarray(Math.max(0, room));
      }
      this.appendTail(stream, data);
    } catch (e) {
      this.failed = true;
      this.o.onFault(e);
    }
  }

  private appendTail(stream: LogStream, data: Buffer): void {
    if (this.tail === 0) return;
    const kept = data.length > this.tail ? data.subarray(data.length - this.tail) : data;
    const seq = this.o.logs.appendLog(this.o.job, stream, kept);
    this.tailRows.push({ seq, bytes: kept.length });
    this.tailBytes += kept.length;
    let drop = 0;
    while (this.tailBytes > this.tail && drop < this.tailRows.length - 1) this.tailBytes -= this.tailRows[drop++]!.bytes;
    if (drop > 0) {
      const gone = this.tailRows.splice(0, drop);
      this.o.logs.dropLogs(this.o.job, gone[0]!.seq, gone[gone.length - 1]!.seq);
    }
  }

  private marker(): string {
    if (this.o.limit === 0) return '[dstack: output is not kept (DSTACK_LOG_LIMIT is 0); it was only shown live]\n';
    const what =
      this.tail === 0
        ? `the first ${size(this.head)} are kept`
        : `the first ${size(this.head)} and the last ${size(this.tail)} are kept, the middle was only shown live`;
    return `\n[dstack: this job printed more than the ${size(this.o.limit)} of output kept per job (DSTACK_LOG_LIMIT): ${what}]\n`;
  }
}

/** A started job whose output goes through a JobLog. */
export interface LoggedStart {
  readonly running: RunningJob;
  /** The job's output has ended: lets out what masking held back; throws what the store could not take. */
  end(): void;
  close(): void;
}

/**
 * Starts the job with its output going through a JobLog (masked, stored up to the limit, shown
 * live). A store that fails while the job runs (a full disk) kills the job; the fault is thrown
 * when the job has ended, so it ends `failed` with that error, never with a trace from a callback.
 */
export async function startLogged(
  options: Omit<JobLogOptions, 'onFault'>,
  start: (write: (stream: LogStream, chunk: Buffer) => void) => Promise<RunningJob>,
): Promise<LoggedStart> {
  let fault: unknown;
  let running: RunningJob | undefined;
  const log = new JobLog({
    ...options,
    onFault: (e) => {
      fault = e;
      void running?.kill().catch(() => undefined);
    },
  });
  running = await start((stream, chunk) => log.write(stream, chunk));
  if (fault !== undefined) void running.kill().catch(() => undefined);
  const r = running;
  return {
    running: r,
    end: () => {
      log.close();
      if (fault !== undefined) throw fault;
    },
    close: () => log.close(),
  };
}
