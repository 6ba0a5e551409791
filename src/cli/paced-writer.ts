/**
 * Writes that wait for a slow reader (backpressure), so a command printing a 300 MB log holds a
 * few chunks, not the whole log, in memory; and a reader that went away (`dstack logs RUN | head`)
 * ends the writing quietly instead of crashing with EPIPE.
 */
import { once } from 'node:events';
import { readerGone } from './output.js';

export class PacedWriter {
  private broken = false;
  private readonly stop = new AbortController();

  /** The error listener stays for the life of the process: an EPIPE can surface after the last write. */
  constructor(private readonly stream: NodeJS.WritableStream) {
    stream.on('error', this.onError);
  }

  /** False once the reader is gone: the caller can stop producing. */
  get open(): boolean {
    // A guarded output (output.ts) swallows the EPIPE and says so itself.
    return !this.broken && !readerGone(this.stream);
  }

  async write(data: string | Buffer): Promise<boolean> {
    if (!this.open) return false;
    if (!this.stream.write(data)) {
      // 'drain' never comes on a broken pipe: the error listener aborts the wait.
      await once(this.stream as NodeJS.EventEmitter, 'drain', { signal: this.stop.signal }).catch(() => undefined);
    }
    return this.open;
  }

  private readonly onError = (): void => {
    this.broken = true;
    this.stop.abort();
  };
}
