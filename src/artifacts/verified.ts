/**
 * "Already verified" records of the local object store: an object hashed and found sound is not
 * hashed again while its (device, inode, size, mtime, ctime) stay the same — so a 1 GiB dep is
 * hard-linked into every job without being read each time. The kernel sets ctime on any change to
 * the inode (a write, chmod, utimes, a hard link made or removed) and nobody can set it back, so
 * content rewritten with its mtime put back is still caught. What is not caught: bytes that rot on
 * the disk below the filesystem; `dstack store verify` reads everything.
 *
 * One append-only file, `objects/verified`: a line per record, `<hash> <dev>:<ino>:<size>:<mtimeNs>:<ctimeNs>`,
 * the last line for a hash winning. Lines are appended in single writes with O_APPEND, so several
 * dstack processes never tear each other's; a torn or unknown line is ignored. The file is rewritten
 * (temp, rename) when most of it is stale. Losing a record costs one hash, never a wrong answer.
 */
import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { appendFile, open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import type { ContentHash } from '../engine/types.js';
import { isContentHash } from './hash.js';

/** The identity of an inode's current content, as far as the kernel tells. */
export const statKey = (st: BigIntStats): string => `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;

/** Rewrite the file when it holds this many more lines than records. */
const COMPACT_SLACK = 4096;

export class VerifiedRecords {
  private readonly file: string;
  private known: Map<string, string> | undefined;
  private loading: Promise<Map<string, string>> | undefined;
  private pending: string[] = [];
  /** Bytes of the file read so far. */
  private readUpTo = 0;
  private flushing: Promise<void> | undefined;

  constructor(file: string) {
    this.file = file;
  }

  private load(): Promise<Map<string, string>> {
    this.loading ??= (async () => {
      const known = new Map<string, string>();
      const buf = await readFile(this.file).catch(() => Buffer.alloc(0));
      const lines = parseInto(known, buf.toString('utf8'));
      this.known = known;
      this.readUpTo = buf.length;
      if (lines > known.size * 2 + COMPACT_SLACK) await this.compact(known).catch(() => undefined);
      return known;
    })();
    return this.loading;
  }

  /**
   * Reads what other dstack processes appended since we last looked (they link and unlink the same
   * objects and re-record them): without it, two runs sharing a dep would hash it for each other.
   * A file that shrank was compacted: read whole again.
   */
  private async catchUp(known: Map<string, string>): Promise<void> {
    let fh;
    try {
      fh = await open(this.file, 'r');
      const { size } = await fh.stat();
      if (size === this.readUpTo) return;
      const from = size > this.readUpTo ? this.readUpTo : 0;
      const buf = Buffer.alloc(size - from);
      await fh.read(buf, 0, buf.length, from);
      // A line cut by a writer still appending ends without a newline: read it next time.
      const end = buf.lastIndexOf(0x0a) + 1;
      parseInto(known, buf.subarray(0, end).toString('utf8'));
      this.readUpTo = from + end;
    } catch {
      // No file yet, or unreadable: nothing to learn.
    } finally {
      await fh?.close();
    }
  }

  /** True when `hash` was verified and its file's inode has not changed since (`st` from lstat or fstat). */
  async holds(hash: ContentHash, st: BigIntStats): Promise<boolean> {
    const known = await this.load();
    const key = statKey(st);
    if (known.get(hash) === key) return true;
    await this.catchUp(known);
    return known.get(hash) === key;
  }

  /** Records that the file with stat `st` holds the bytes of `hash` (the caller just proved it). */
  async record(hash: ContentHash, st: BigIntStats): Promise<void> {
    const known = await this.load();
    const key = statKey(st);
    if (known.get(hash) === key) return;
    known.set(hash, key);
    this.pending.push(`${hash} ${key}\n`);
    // One append per burst of records, not one per object: a save of 10,000 files makes a few writes.
    this.flushing ??= Promise.resolve().then(() => this.flush());
    return this.flushing;
  }

  /** Forgets `hash` here (its object was quarantined); other processes find the inode changed. */
  forget(hash: ContentHash): void {
    this.known?.delete(hash);
  }

  private async flush(): Promise<void> {
    while (this.pending.length) {
      const chunk = this.pending.join('');
      this.pending = [];
      await appendFile(this.file, chunk, { mode: 0o600 }).catch(() => undefined);
    }
    this.flushing = undefined;
  }

  private async compact(known: Map<string, string>): Promise<void> {
    const tmp = `${this.file}.${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await writeFile(tmp, [...known].map(([h, k]) => `${h} ${k}\n`).join(''), { mode: 0o600 });
      await rename(tmp, this.file);
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }
}

/** Adds the well-formed lines of `text` to `known` (the last line for a hash wins); returns how many there were. */
function parseInto(known: Map<string, string>, text: string): number {
  let lines = 0;
  for (const line of text.split('\n')) {
    if (line.indexOf(' ') !== 64) continue;
    const hash = line.slice(0, 64);
    const key = line.slice(65);
    if (!isContentHash(hash) || !/^\d+:\d+:\d+:\d+:\d+$/.test(key)) continue;
    known.set(hash, key);
    lines++;
  }
  return lines;
}
