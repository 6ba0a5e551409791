/**
 * `dstack tags add|list|delete`: named, pinned artifact sets, taken from a finished run or from local
 * files. A `tag:` dep sees exactly the tag's manifest, whatever runs or gets pruned later.
 */
import { Command, Option } from 'clipanion';
import type { Manifest } from '../../artifacts/types.js';
import { DstackError } from '../../engine/errors.js';
import { insideRelative } from '../../engine/paths.js';
import type { Store, TagRecord } from '../../engine/store/types.js';
import { isFinal, type ArtifactSpec, type RunName } from '../../engine/types.js';
import { mergeJobManifests, unknownTag } from '../artifact-ref.js';
import { DstackCommand, usageError } from '../base.js';
import { confirm } from '../confirm.js';
import { formatAgo, formatBytes, table } from '../format.js';
import { Session } from '../session.js';
import { requireRun } from '../runs.js';

const TAG_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

function checkTagName(name: string): void {
  if (!TAG_NAME.test(name)) {
    throw new DstackError('DS0108', `'${name}' is not a valid tag name`, {
      hint: 'use letters, digits, `.`, `_` and `-`, starting with a letter or digit (at most 100 characters), e.g. mnist-v1',
    });
  }
}

const fileCount = (m: Manifest): number => m.entries.filter((e) => e.type === 'file').length;
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export class TagsAddCommand extends DstackCommand {
  static override paths = [['tags', 'add']];
  static override usage = Command.Usage({
    category: 'Tags',
    description: 'tag the artifacts of a run, or local files',
    details: `
      With RUN, pins the artifacts of that run (it must be done) under NAME; \`dstack ps\` shows the tag, and
      \`dstack prune\` keeps the run. With \`-a\`, stores local files or folders (relative to the current folder, which
      they may not leave) under their relative paths: \`-a ./data\` gives files \`data/…\`. A workflow then depends on
      exactly these files with \`deps: [- tag: NAME]\` (or \`:NAME\`).
    `,
    examples: [
      ['Tag the artifacts of a finished run', 'dstack tags add mnist-v1 wet-mangust-1'],
      ['Tag a local folder', 'dstack tags add mnist-raw -a ./data'],
      ['Tag several paths at once', 'dstack tags add bundle -a data -a configs/train.yaml'],
    ],
  });

  artifacts = Option.Array('-a,--artifact', { description: 'a local file or folder to tag (repeatable)' });
  name = Option.String({ name: 'NAME' });
  runName = Option.String({ required: false, name: 'RUN' });

  async run(): Promise<number> {
    checkTagName(this.name);
    const paths = this.artifacts ?? [];
    if (this.runName && paths.length) throw usageError('give either RUN or -a paths, not both', `dstack tags add ${this.name} RUN`);
    if (!this.runName && !paths.length) throw usageError('name a run to tag, or local paths with -a', `dstack tags add ${this.name} wet-mangust-1`);
    const session = new Session();
    try {
      const store = await session.store();
      if (store.tags.getTag(this.name)) throw duplicate(this.name);
      const tag = this.runName ? fromRun(store, this.name, this.runName) : await this.fromPaths(session, paths);
      store.tags.putTag(tag);
      if (tag.run) store.tags.setRunTag(tag.run, tag.name);
      const what = tag.run ? `of run ${tag.run}` : `from ${paths.join(', ')}`;
      this.context.stderr.write(`Tagged ${plural(fileCount(tag.manifest), 'file')} (${formatBytes(tag.manifest.size)}) ${what} as ${tag.name}\n`);
      return 0;
    } finally {
      await session.close();
    }
  }

  private async fromPaths(session: Session, paths: readonly string[]): Promise<TagRecord> {
    const specs: ArtifactSpec[] = paths.map((p) => {
      const rel = insideRelative(p);
      if (rel === undefined) {
        throw new DstackError('DS0009', `'${p}' is outside the current folder`, {
          hint: 'run `dstack tags add` from a folder that contains the paths, and give them relative to it',
        });
      }
      return { path: rel, mount: false };
    });
    const saved = await (await session.artifacts()).save(process.cwd(), specs);
    if (saved.missing.length) {
      throw new DstackError('DS0107', `no such file or folder: ${saved.missing.join(', ')}`, { hint: `paths are relative to ${process.cwd()}` });
    }
    for (const s of saved.skipped) this.context.stderr.write(`warning: '${s.path}' is a ${s.kind}; not tagged\n`);
    return { name: this.name, manifest: saved.manifest, createdAt: Date.now() };
  }
}

function fromRun(store: Pick<Store, 'runs'>, name: string, runName: string): TagRecord {
  const run = requireRun(store, runName);
  if (!isFinal(run.status)) {
    throw new DstackError('DS0104', `run ${run.name} is still ${run.status}`, { hint: `wait for it to finish (\`dstack logs ${run.name} -f\`), then tag it` });
  }
  if (run.status !== 'done') {
    throw new DstackError('DS0109', `run ${run.name} ended ${run.status}; only a run that is done can be tagged`, {
      hint: 'run the workflow again, or tag local files with `dstack tags add NAME -a PATH`',
    });
  }
  return { name, run: run.name, manifest: mergeJobManifests(store.runs.jobs(run.name)).manifest, createdAt: Date.now() };
}

const duplicate = (name: string): DstackError =>
  new DstackError('DS0106', `tag '${name}' already exists`, { hint: `pick another name, or delete it first: dstack tags delete ${name}` });

export class TagsListCommand extends DstackCommand {
  static override paths = [['tags', 'list'], ['tags']];
  static override usage = Command.Usage({
    category: 'Tags',
    description: 'list tags',
    details: 'Lists every tag with the run it was taken from (`-` for local files), its files and their size.',
    examples: [
      ['Every tag', 'dstack tags list'],
      ['As JSON', 'dstack tags list --json'],
    ],
  });

  json = Option.Boolean('--json', false, { description: 'machine-readable output' });

  async run(): Promise<number> {
    const session = new Session();
    try {
      const tags = (await session.store('read')).tags.listTags();
      if (this.json) {
        const out = tags.map((t) => ({
          name: t.name,
          run: t.run ?? null,
          files: fileCount(t.manifest),
          size: t.manifest.size,
          createdAt: new Date(t.createdAt).toISOString(),
        }));
        this.context.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return 0;
      }
      if (tags.length === 0) {
        this.context.stderr.write('No tags yet. Add one with `dstack tags add NAME RUN` or `dstack tags add NAME -a DIR`.\n');
        return 0;
      }
      const rows = tags.map((t) => [t.name, t.run ?? '-', String(fileCount(t.manifest)), formatBytes(t.manifest.size), formatAgo(t.createdAt)]);
      this.context.stdout.write(`${table(['NAME', 'RUN', 'FILES', 'SIZE', 'CREATED'], rows)}\n`);
      return 0;
    } finally {
      await session.close();
    }
  }
}

export class TagsDeleteCommand extends DstackCommand {
  static override paths = [['tags', 'delete']];
  static override usage = Command.Usage({
    category: 'Tags',
    description: 'delete a tag',
    details: `
      Deletes the tag NAME. Its files stay in the store while a run still refers to them; \`dstack prune\` removes
      the rest. Asks first unless \`-y\`.
    `,
    examples: [['Delete a tag', 'dstack tags delete mnist-v1 -y']],
  });

  yes = Option.Boolean('-y,--yes', false, { description: 'do not ask for confirmation' });
  name = Option.String({ name: 'NAME' });

  async run(): Promise<number> {
    const session = new Session();
    try {
      const store = await session.store();
      const tag = store.tags.getTag(this.name);
      if (!tag) throw unknownTag(this.name);
      await confirm(`Delete tag ${tag.name}?`, this.yes, `dstack tags delete ${tag.name} -y`);
      if (!store.tags.deleteTag(tag.name)) throw unknownTag(this.name);
      if (tag.run) clearRunTag(store, tag.run, tag.name);
      this.context.stderr.write(`Deleted tag ${tag.name}\n`);
      return 0;
    } finally {
      await session.close();
    }
  }
}

/** The run shows one tag in `ps`: when it was this one, show another tag taken from the run, if any. */
function clearRunTag(store: Pick<Store, 'runs' | 'tags'>, runName: RunName, deleted: string): void {
  const run = store.runs.getRun(runName);
  if (!run || run.tag !== deleted) return;
  store.tags.setRunTag(run.name, store.tags.listTags().find((t) => t.run === run.name)?.name);
}

export const tagsCommands = [TagsAddCommand, TagsListCommand, TagsDeleteCommand];
