import { stat } from 'node:fs/promises';
import { basename, dirname, posix, resolve } from 'node:path';
import { Command, Option } from 'clipanion';
import { escapingLinks, makeManifest, symlinkTargetInside } from '../../artifacts/manifest.js';
import type { ManifestEntry } from '../../artifacts/types.js';
import { isOutsidePath, isValidOutsidePath, roots } from '../../artifacts/outside.js';
import { DstackError } from '../../engine/errors.js';
import { insideRelative } from '../../engine/paths.js';
import { resolveArtifactSource } from '../artifact-ref.js';
import { DstackCommand } from '../base.js';
import { formatBytes } from '../format.js';
import { Session } from '../session.js';

export class CpCommand extends DstackCommand {
  static override paths = [['cp']];
  static override usage = Command.Usage({
    description: 'copy artifact files of a run or a tag to a local path',
    details: `
      Copies SRC, a file or a folder among the artifacts of RUN (or of the tag TAG, written \`:TAG\`), to DST, like
      \`cp -r\`: when DST is an existing folder, SRC lands inside it under its own name; otherwise DST becomes the copy.
      \`.\` as SRC copies every artifact. File modes (the executable bit) are kept. See what there is with \`dstack ls\`.
      Every file is checked against its hash as it is copied, and the copy is written beside DST first: when a stored
      file turns out damaged or missing (error DS0304 or DS0303, exit 3), DST is left as it was. Symlinks that would
      point outside DST are skipped with a warning.
    `,
    examples: [
      ['One file into the current folder', 'dstack cp wet-mangust-1 model/weights.pt .'],
      ['A folder of a tag, to a new folder', 'dstack cp :mnist-v1 data ./mnist-data'],
      ['Every artifact of a run', 'dstack cp wet-mangust-1 . ./out'],
    ],
  });

  source = Option.String({ name: 'RUN|:TAG' });
  src = Option.String({ name: 'SRC' });
  dst = Option.String({ name: 'DST' });

  async run(): Promise<number> {
    const rel = this.src.split(/[\\/]/).includes('..') ? undefined : srcPath(this.src);
    if (rel === undefined) {
      throw new DstackError('DS0009', `SRC '${this.src}' leaves the artifact tree`, {
        hint: `give a path as \`dstack ls ${this.source}\` shows it, e.g. out/model.pt`,
      });
    }
    const session = new Session();
    try {
      const source = resolveArtifactSource(await session.store('read'), this.source);
      // Artifacts outside /workflow (/opt/venv) are copied by their own path, not with `.`: under DST
      // they would need a folder per absolute path, which `cp -r` never makes.
      const all = source.manifest.entries;
      const entries = rel === '' ? all.filter((e) => !isOutsidePath(e.path)) : all;
      const left = rel === '' ? roots(all.filter((e) => isOutsidePath(e.path))) : [];
      if (left.length) this.context.stderr.write(`note: not copied, outside /workflow: ${left.join(', ')} (copy each by its path: \`dstack cp ${this.source} ${left[0]} DST\`)\n`);
      const exact = rel === '' ? undefined : entries.find((e) => e.path === rel);
      const under = rel === '' ? entries : entries.filter((e) => e.path.startsWith(`${rel}/`));
      const dst = resolve(this.dst);
      const dstStat = await stat(dst).catch(() => undefined);

      let target: string;
      let picked: ManifestEntry[];
      if (exact && exact.type !== 'dir') {
        // A single file (or symlink): into DST when it is a folder, else as DST.
        const intoFolder = dstStat?.isDirectory() === true || (!dstStat && /[\\/]$/.test(this.dst));
        target = intoFolder ? dst : dirname(dst);
        picked = [{ ...exact, path: intoFolder ? basename(exact.path) : basename(dst) }];
      } else if (exact || under.length > 0) {
        if (dstStat && !dstStat.isDirectory()) {
          throw new DstackError('DS0105', `cannot copy the folder '${rel || '.'}' onto the file ${this.dst}`, { hint: 'give a folder (new or existing) as DST' });
        }
        target = dstStat && rel !== '' ? resolve(dst, basename(rel)) : dst;
        picked = under.map((e) => (rel === '' ? e : { ...e, path: e.path.slice(rel.length + 1) }));
      } else {
        throw new DstackError('DS0107', `'${rel}' is not among the artifacts of ${describe(source)}`, {
          hint: `list them with \`dstack ls ${this.source}\``,
        });
      }

      // A symlink that points out of what is copied would dangle at best and escape DST at worst,
      // whether alone or through another link of the copy (`a -> b`, `b -> ..`).
      const chained = new Set(escapingLinks(picked).map((l) => l.path));
      const kept = picked.filter((e) => {
        if (e.type !== 'symlink' || (symlinkTargetInside(e.path, e.target) !== undefined && !chained.has(e.path))) return true;
        this.context.stderr.write(`warning: skipped the symlink ${e.path} -> ${e.target}: it points outside what is copied\n`);
        return false;
      });
      const manifest = makeManifest(kept);
      const { copyOut } = await import('../../artifacts/copy-out.js');
      const { droppedLinks } = await copyOut(await session.artifacts(), manifest, target);
      for (const l of droppedLinks) {
        this.context.stderr.write(`warning: removed the symlink ${l.path} -> ${l.target}: among the files already in ${this.dst} it points outside\n`);
      }
      const files = kept.filter((e) => e.type === 'file').length;
      this.context.stderr.write(`Copied ${files} file${files === 1 ? '' : 's'} (${formatBytes(manifest.size)}) to ${this.dst}\n`);
      return 0;
    } finally {
      await session.close();
    }
  }
}

/** SRC as a manifest path: relative to /workflow, or an absolute one for artifacts saved outside it. */
function srcPath(src: string): string | undefined {
  if (!isOutsidePath(src)) return insideRelative(src);
  const n = src.startsWith('~') ? src.replace(/\/+$/, '') : posix.normalize(src).replace(/(.)\/+$/, '$1');
  return isValidOutsidePath(n) ? n : undefined;
}

const describe = (s: ReturnType<typeof resolveArtifactSource>): string => (s.kind === 'run' ? `run ${s.run.name}` : `tag ${s.tag.name}`);
