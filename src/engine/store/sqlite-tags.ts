/** Tags on SQLite: a name pinning a copy of an artifact manifest, outliving the run it came from. */
import { DstackError } from '../errors.js';
import type { RunName } from '../types.js';
import type { Connection } from './connection.js';
import type { TagRecord } from './records.js';
import { toTag, type TagRow } from './rows.js';
import type { TagStore } from './types.js';

export class SqliteTags implements TagStore {
  private readonly s;

  constructor(private readonly c: Connection) {
    const p = (sql: string) => c.prepare(sql);
    this.s = {
      insert: p('INSERT INTO tags (name, run, manifest, created_at) VALUES (@name, @run, @manifest, @createdAt)'),
      replace: p('INSERT OR REPLACE INTO tags (name, run, manifest, created_at) VALUES (@name, @run, @manifest, @createdAt)'),
      get: p('SELECT * FROM tags WHERE name = ?'),
      list: p('SELECT * FROM tags ORDER BY name'),
      delete: p('DELETE FROM tags WHERE name = ?'),
      setRunTag: p('UPDATE runs SET tag = ? WHERE name = ?'),
    };
  }

  putTag(tag: TagRecord, options: { readonly replace?: boolean } = {}): void {
    const row = { name: tag.name, run: tag.run ?? null, manifest: JSON.stringify(tag.manifest), createdAt: tag.createdAt };
    this.c.guard(() => {
      if (options.replace) {
        this.s.replace.run(row);
        return;
      }
      try {
        this.s.insert.run(row);
      } catch (e) {
        if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
          throw new DstackError('DS0106', `tag '${tag.name}' already exists`, {
            hint: `pick another name, or delete it first: dstack tags delete ${tag.name}`,
          });
        }
        throw e;
      }
    });
  }

  getTag(name: string): TagRecord | undefined {
    return this.c.guard(() => {
      const row = this.s.get.get(name) as TagRow | undefined;
      return row && toTag(this.c, row);
    });
  }

  listTags(): readonly TagRecord[] {
    return this.c.guard(() => (this.s.list.all() as TagRow[]).map((r) => toTag(this.c, r)));
  }

  deleteTag(name: string): boolean {
    return this.c.guard(() => this.s.delete.run(name).changes > 0);
  }

  setRunTag(name: RunName, tag: string | undefined): void {
    const changes = this.c.guard(() => this.s.setRunTag.run(tag ?? null, name).changes);
    this.c.mustChange(changes, `setRunTag(${name})`);
  }
}
