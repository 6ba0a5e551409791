import { relative } from 'node:path';
import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import type { ContentHash } from '../../engine/types.js';
import { DstackCommand } from '../base.js';
import { formatBytes } from '../format.js';
import { Session } from '../session.js';

export class StoreVerifyCommand extends DstackCommand {
  static override paths = [['store', 'verify']];
  static override usage = Command.Usage({
    description: 'check every stored file and the run database',
    details: `
      Reads every object in the store (artifacts, code snapshots) and checks that its bytes still hash to its name;
      a damaged one is moved to \`objects/quarantine/\` in the dstack home. Looks for every object a run or a tag
      refers to, so a missing one is found too. The jobs that made a damaged or missing object stop being reused:
      the next run makes it again. Then runs SQLite's integrity check on the run database.

      Prints one line per problem (\`damaged HASH\`, \`missing HASH\`, \`database PROBLEM\`) and a summary; exits 0
      when all is sound, 3 (DS0306) when anything was found. \`--quick\` trusts objects that have not changed since
      they were last hashed and runs SQLite's quicker check.
    `,
    examples: [
      ['Check everything', 'dstack store verify'],
      ['As JSON', 'dstack store verify --json'],
    ],
  });

  quick = Option.Boolean('--quick', false, { description: 'only hash objects changed since they were last hashed; quick database check' });
  json = Option.Boolean('--json', false, { description: 'machine-readable output' });

  async run(): Promise<number> {
    const session = new Session();
    try {
      const [{ checkDatabase }, { liveObjects }, { verifyObjects }] = await Promise.all([
        import('../../engine/store/integrity.js'),
        import('../../artifacts/gc.js'),
        import('../../artifacts/verify.js'),
      ]);
      const db = checkDatabase(session.home, { quick: this.quick });
      // A damaged database cannot say what it refers to: the objects are still checked.
      const referenced = db.absent || db.problems.length ? new Set<ContentHash>() : await liveObjects(session.home, (await session.store()).prune.referencedObjects());
      const objects = await verifyObjects((await session.artifacts()).objects, { referenced, quick: this.quick });
      const at = (p: string | undefined): string | null => (p === undefined ? null : relative(session.home, p));

      if (this.json) {
        const out = {
          objects: objects.objects,
          bytes: objects.bytes,
          damaged: objects.damaged.map((d) => ({ hash: d.hash, quarantinedAs: at(d.quarantinedAs) })),
          missing: objects.missing,
          database: { path: db.path, checked: !db.absent, problems: db.problems },
        };
        this.context.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      } else {
        for (const d of objects.damaged) this.context.stdout.write(`damaged ${d.hash}${d.quarantinedAs ? ` (moved to ${at(d.quarantinedAs)})` : ''}\n`);
        for (const h of objects.missing) this.context.stdout.write(`missing ${h}\n`);
        for (const p of db.problems) this.context.stdout.write(`database ${p}\n`);
      }
      const n = (k: number, word: string): string => `${k} ${word}${k === 1 ? '' : 's'}`;
      const checked = `Checked ${n(objects.objects, 'object')} (${formatBytes(objects.bytes)})${db.absent ? '' : ` and ${relative(session.home, db.path)}`}`;
      const faults = objects.damaged.length + objects.missing.length;
      if (faults === 0 && db.problems.length === 0) {
        this.context.stderr.write(`${checked}: all sound\n`);
        return 0;
      }
      const found: string[] = [];
      if (objects.damaged.length) found.push(`${n(objects.damaged.length, 'damaged object')} (quarantined)`);
      if (objects.missing.length) found.push(n(objects.missing.length, 'missing object'));
      if (db.problems.length) found.push(`a damaged database (${n(db.problems.length, 'problem')})`);
      throw new DstackError('DS0306', `${checked}: found ${found.join(', ')}`, {
        hint: db.problems.length
          ? `move ${db.path} aside (with its -wal and -shm files) to start afresh; the run history in it will be lost`
          : 'the jobs that made them will run again next time; tags that hold them need their runs again',
      });
    } finally {
      await session.close();
    }
  }
}
