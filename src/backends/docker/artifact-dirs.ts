/**
 * The artifact folders a job finds ready in /workflow, as dstack 0.7 made them: `echo hi >
 * output/hello.txt` with `artifacts: [./output]` works without a `mkdir -p` first (issue 8).
 *
 * An artifact path may name a folder (`output`, `lightning_logs`) or a file (`model.pt`,
 * `out/x.txt`); nothing in the workflow says which. A last segment with an extension is taken for a
 * file: only the folder it goes in is made, so the job can still write the file itself. Anything
 * the code already has on the way is left alone, and so are the deps' paths (mounted read-only).
 */
import { posix } from 'node:path';
import type { Manifest } from '../../artifacts/types.js';
import type { ArtifactSpec } from '../../engine/types.js';

/** `model.pt`, `x.tar.gz`: a name with an extension. `.cache` and `data` are not. */
const looksLikeFile = (name: string): boolean => /^[^.].*\.[A-Za-z0-9]+$/.test(name);

/** Relative to /workflow, `/`-separated, sorted; parents before children. */
export function artifactFolders(artifacts: readonly ArtifactSpec[], taken: { readonly snapshot: Manifest; readonly depPaths: readonly string[] }): string[] {
  const nonDirs = new Set(taken.snapshot.entries.filter((e) => e.type !== 'dir').map((e) => e.path));
  const underDep = (p: string): boolean => taken.depPaths.some((d) => p === d || p.startsWith(`${d}/`));
  const out = new Set<string>();
  for (const a of artifacts) {
    // A path outside /workflow (an environment: `/opt/venv`, `~/.cache/x`) is the image's own:
    // nothing to make here (and walking an absolute one's parents would never reach '.').
    if (a.absolute || posix.isAbsolute(a.path)) continue;
    const folder = looksLikeFile(posix.basename(a.path)) ? posix.dirname(a.path) : a.path;
    if (folder === '' || folder === '.' || underDep(folder)) continue;
    let blocked = false;
    for (let p = folder; p !== '.'; p = posix.dirname(p)) if (nonDirs.has(p)) blocked = true;
    if (!blocked) out.add(folder);
  }
  return [...out].sort();
}
