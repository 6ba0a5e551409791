/** The file-hash stat cache on SQLite: (device, inode) → the content hash seen at (size, mtime). */
import type { ContentHash } from '../types.js';
import { asContentHash } from '../types.js';
import type { Connection } from './connection.js';
import type { StatKey } from './records.js';
import type { FileHashStore } from './types.js';

export class SqliteFileHashes implements FileHashStore {
  private readonly s;

  constructor(private readonly c: Connection) {
    const p = (sql: string) => c.prepare(sql);
    this.s = {
      get: p('SELECT size, mtime_ns, hash FROM file_hashes WHERE dev = ? AND ino = ?'),
      put: p(
        `INSERT INTO file_hashes (dev, ino, size, mtime_ns, hash) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (dev, ino) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, hash = excluded.hash`,
      ),
    };
  }

  getFileHashes(keys: readonly StatKey[]): Map<string, ContentHash> {
    return this.c.read(() => {
      const out = new Map<string, ContentHash>();
      for (const k of keys) {
        const row = this.s.get.get(k.dev, k.ino) as { size: number; mtime_ns: number; hash: string } | undefined;
        if (row && row.size === k.size && row.mtime_ns === k.mtimeNs) out.set(`${k.dev}:${k.ino}`, asContentHash(row.hash));
      }
      return out;
    });
  }

  /** A cache: on a read-only home it learns nothing, and that is no error. */
  putFileHashes(entries: readonly (StatKey & { readonly hash: ContentHash })[]): void {
    if (entries.length === 0 || this.c.readOnly) return;
    this.c.write(() => {
      for (const e of entries) this.s.put.run(e.dev, e.ino, e.size, e.mtimeNs, e.hash);
    });
  }
}
