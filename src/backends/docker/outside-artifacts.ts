/**
 * A job's artifacts outside /workflow, for a machine whose jobs run on a Docker engine (the local one,
 * a pool host's): the deps' are split off before /workflow is staged and written into the container
 * between create and start; the job's own are read out of its container after it ends. The bytes go
 * through the engine's archive API (archive.ts) both ways, so the local engine and a host's engine
 * reached through its forwarded socket work alike, and the host needs nothing of its own.
 */
import { posix } from 'node:path';
import { mergeOutside, splitOutside } from '../../artifacts/outside.js';
import type { ArtifactStore, Manifest, ManifestEntry } from '../../artifacts/types.js';
import type { JobContext } from '../../engine/backend.js';
import type { ArtifactSpec } from '../../engine/types.js';
import { restoreOutside, saveOutside } from './archive.js';
import { artifactLimitFrom } from './artifact-limit.js';
import { DEFAULT_HOME } from './container.js';
import type { DockerClient } from './docker.js';

export const insideSpecs = (specs: readonly ArtifactSpec[]): ArtifactSpec[] => specs.filter((a) => !a.absolute);

/** `model.pt`, `x.tar.gz`: a name with an extension is a file, whose folder alone is made (as in /workflow). */
const looksLikeFile = (name: string): boolean => /^[^.].*\.[A-Za-z0-9]+$/.test(name);

export class OutsideArtifacts {
  private restore: readonly ManifestEntry[] = [];
  private store: ArtifactStore | undefined;

  /** The deps' manifests as /workflow staging must see them; their outside entries are kept for `beforeStart`. */
  stage(deps: readonly Manifest[], store: ArtifactStore): Manifest[] {
    this.store = store;
    this.restore = mergeOutside(deps);
    return deps.map((m) => splitOutside(m).inside);
  }

  /**
   * Writes the deps' outside entries into the created container, and makes the folders of the job's
   * own outside artifacts that neither the image nor a dep has (dstack 0.7 made artifact folders
   * before the job: `pip install --target /opt/x` into one that does not exist yet works).
   */
  beforeStart(ctx: JobContext, client: DockerClient, home: string | undefined): (id: string) => Promise<void> {
    return async (id) => {
      const h = home ?? DEFAULT_HOME;
      const store = this.store;
      if (store && this.restore.length) await restoreOutside({ client, container: id, entries: this.restore, home: h, store, signal: ctx.signal });
      const folders = ctx.spec.artifacts
        .filter((a) => a.absolute && !this.restore.some((e) => e.path === a.path || a.path.startsWith(`${e.path}/`)))
        .map((a) => (looksLikeFile(posix.basename(a.path)) ? posix.dirname(a.path) : a.path))
        .filter((p) => p !== '/' && p !== '~' && p !== '.');
      const missing: ManifestEntry[] = [];
      for (const p of new Set(folders)) {
        const at = p === '~' || p.startsWith('~/') ? posix.join(h, p.slice(1)) : p;
        const exists = await client.call('HEAD', `/containers/${id}/archive`, { query: { path: at }, signal: ctx.signal }).then(
          () => true,
          () => false,
        );
        if (!exists) missing.push({ type: 'dir', path: p, mode: 0o755 });
      }
      if (store && missing.length) await restoreOutside({ client, container: id, entries: missing, home: h, store, signal: ctx.signal });
    };
  }

  /** Reads the job's outside artifacts from its container (ended, not removed); none when it never ran. */
  async collect(o: {
    readonly ctx: JobContext;
    readonly client: DockerClient;
    readonly container: string | undefined;
    readonly specs: readonly ArtifactSpec[];
    readonly home: string | undefined;
    readonly store: ArtifactStore;
  }): Promise<readonly ManifestEntry[]> {
    const specs = o.specs.filter((a) => a.absolute);
    if (specs.length === 0) return [];
    const notify = (message: string): void => o.ctx.notify({ kind: 'info', message });
    if (!o.container) {
      for (const a of specs) notify(`artifact '${a.path}' was not found: the job's container was never made`);
      return [];
    }
    const saved = await saveOutside({ client: o.client, container: o.container, specs, home: o.home ?? DEFAULT_HOME, store: o.store, limit: artifactLimitFrom(), signal: o.ctx.signal });
    for (const p of saved.missing) notify(`artifact '${p}' was not found in the job's container`);
    for (const s of saved.skipped) notify(`artifact entry ${s} was not saved`);
    return saved.entries;
  }
}
