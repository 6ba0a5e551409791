import { Command, Option } from 'clipanion';
import type { ManifestEntry } from '../../artifacts/types.js';
import { DstackError } from '../../engine/errors.js';
import { posix } from 'node:path';
import { isOutsidePath } from '../../artifacts/outside.js';
import { insideRelative } from '../../engine/paths.js';
import { resolveArtifactSource } from '../artifact-ref.js';
import { DstackCommand } from '../base.js';
import { formatBytes, table } from '../format.js';
import { Session } from '../session.js';

export class LsCommand extends DstackCommand {
  static override paths = [['ls']];
  static override usage = Command.Usage({
    description: 'list the artifact files of a run or a tag',
    details: `
      Lists the files that RUN saved as artifacts (every job's, a later job winning on the same path), or the files
      of the tag TAG when written \`:TAG\`, with their sizes and a total. PREFIX keeps the paths that start with it:
      \`out/\` lists the folder \`out\`, \`out\` also matches \`output.txt\`.
    `,
    examples: [
      ['The artifacts of a run', 'dstack ls wet-mangust-1'],
      ['Only what is under model/', 'dstack ls wet-mangust-1 model/'],
      ['The files of a tag, as JSON', 'dstack ls :mnist-v1 --json'],
    ],
  });

  json = Option.Boolean('--json', false, { description: 'machine-readable output' });
  source = Option.String({ name: 'RUN|:TAG' });
  prefix = Option.String({ required: false, name: 'PREFIX' });

  async run(): Promise<number> {
    const session = new Session();
    try {
      const src = resolveArtifactSource(await session.store('read'), this.source);
      const prefix = normalisePrefix(this.prefix);
      const listed = src.manifest.entries.filter(
        (e): e is Exclude<ManifestEntry, { type: 'dir' }> => e.type !== 'dir' && e.path.startsWith(prefix),
      );
      const files = listed.filter((e) => e.type === 'file');
      const total = files.reduce((n, e) => n + (e.type === 'file' ? e.size : 0), 0);
      const jobOf = (path: string): string | undefined => (src.kind === 'run' ? src.jobOf.get(path)?.id : undefined);
      const workflowOf = (path: string): string => (src.kind === 'run' ? (src.jobOf.get(path)?.workflow ?? '') : '');

      if (this.json) {
        const out = {
          ...(src.kind === 'run' ? { run: src.run.name, tag: null } : { run: src.tag.run ?? null, tag: src.tag.name }),
          prefix: this.prefix ?? null,
          entries: listed.map((e) => ({
            path: e.path,
            type: e.type,
            ...(e.type === 'file' ? { size: e.size, mode: `0${e.mode.toString(8)}`, hash: e.hash } : { target: e.target }),
            ...(src.kind === 'run' ? { job: jobOf(e.path) ?? null } : {}),
          })),
          files: files.length,
          size: total,
        };
        this.context.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return 0;
      }

      const rows = listed.map((e) => {
        const row = e.type === 'file' ? [e.path, formatBytes(e.size)] : [`${e.path} -> ${e.target}`, ''];
        return src.kind === 'run' ? [...row, workflowOf(e.path)] : row;
      });
      const header = src.kind === 'run' ? ['PATH', 'SIZE', 'JOB'] : ['PATH', 'SIZE'];
      if (rows.length) this.context.stdout.write(`${table(header, rows)}\n`);
      this.context.stdout.write(`${files.length} file${files.length === 1 ? '' : 's'}, ${formatBytes(total)}\n`);
      return 0;
    } finally {
      await session.close();
    }
  }
}

/** `./out/` and `out/` are the same prefix; a trailing slash is kept, it means "inside the folder". */
function normalisePrefix(prefix: string | undefined): string {
  if (prefix === undefined) return '';
  // Artifacts outside /workflow are listed under their absolute path (/opt/venv/bin/python, ~/.cache/x).
  if (isOutsidePath(prefix) && !prefix.split('/').includes('..')) {
    const n = prefix.startsWith('~') ? prefix : posix.normalize(prefix);
    return prefix.endsWith('/') || n === '/' ? n.replace(/\/?$/, '/') : n;
  }
  const inside = insideRelative(prefix);
  if (inside === undefined) throw new DstackError('DS0009', `prefix '${prefix}' leaves the artifact tree`, { hint: 'artifact paths are relative, e.g. `out/`, or absolute for those saved outside /workflow, e.g. `/opt/venv/`' });
  if (inside === '') return '';
  return prefix.endsWith('/') ? `${inside}/` : inside;
}
