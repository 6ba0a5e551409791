/**
 * What a command needs from the outside world, opened lazily so `dstack --version` and `dstack ps`
 * never load dockerode, and nothing is created in the dstack home before it is needed.
 */
import type { LocalArtifactStore } from '../artifacts/local-store.js';
import type { Backend } from '../engine/backend.js';
import type { Store } from '../engine/store/types.js';
import { dstackHome } from './home.js';

export class Session {
  readonly home: string;
  #store: Store | undefined;
  #artifacts: LocalArtifactStore | undefined;
  readonly #backends = new Map<string, Backend>();

  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.home = dstackHome(env);
  }

  /**
   * The run store. `read`: the command only reads (ps, logs, ls, cp), so a home it may not write
   * (a read-only mount) still serves it, opened read-only.
   */
  async store(access: 'read' | 'write' = 'write'): Promise<Store> {
    if (!this.#store) {
      const { openStore } = await import('../engine/store/sqlite.js');
      this.#store = openStore(this.home, { access });
    }
    return this.#store;
  }

  async artifacts(): Promise<LocalArtifactStore> {
    if (!this.#artifacts) {
      const { LocalArtifactStore } = await import('../artifacts/local-store.js');
      this.#artifacts = new LocalArtifactStore({
        home: this.home,
        // A missing or damaged object stops the jobs that made it being cache hits: the next run
        // re-makes it instead of failing on it forever (issue 7 §2).
        onFault: async (hash) => {
          const store = await this.store();
          if (!store.readOnly) store.cache.forgetCacheHitsWith(hash);
        },
      });
    }
    return this.#artifacts;
  }

  /**
   * The backend a run is recorded with (`local`, `ssh:NAME`, …); undefined when not offered here.
   * Rejects when its remote is no longer configured.
   */
  async backend(id: string): Promise<Backend | undefined> {
    const existing = this.#backends.get(id);
    if (existing) return existing;
    const { registry } = await import('../backends/index.js');
    const backend = await registry.open(id, { home: this.home });
    if (backend) this.#backends.set(id, backend);
    return backend;
  }

  /** As `backend`, but undefined when it cannot be opened (a remote deleted since): runs on it are left as they are. */
  async reachable(id: string): Promise<Backend | undefined> {
    return this.backend(id).catch(() => undefined);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#backends.values()].map((b) => b.close().catch(() => undefined)));
    this.#store?.close();
  }
}
