/**
 * Plugins by kind, and what is generic about them: opening the backend a run was recorded with
 * (`local`, `ssh:lab`, `aws:team`), resolving `--remote [NAME]` through config.json, and gathering
 * the plugins' own commands. The built-in registry is src/backends/index.ts; tests make their own
 * with a fake cloud in it, exactly as a real cloud joins the built-in one.
 */
import type { CommandClass } from 'clipanion';
import type { Backend } from '../engine/backend.js';
import { DstackError } from '../engine/errors.js';
import type { DstackContext } from './command.js';
import type { AnyPlugin } from './plugin.js';
import { Remotes } from './remotes.js';

/** What `--remote NAME` of a remote that stores runs and runs none (a team bucket) says. */
export function storesOnlyError(name: string, kind: string): DstackError {
  return new DstackError('DS0268', `remote '${name}' is a ${kind} bucket: it stores runs, it does not run them`, {
    hint: 'name a pool or a cloud with --remote NAME (see `dstack config list`); the team bucket serves the cache and `dstack push` by itself',
  });
}

export interface OpenOptions {
  readonly home: string;
  /** Passed to the plugin as is: knobs for tests (see BackendOpenOptions.settings). */
  readonly settings?: Readonly<Record<string, unknown>>;
}

export class BackendRegistry {
  constructor(
    readonly plugins: readonly AnyPlugin[],
    /** The kind that runs a job when no `--remote` is given. */
    private readonly defaultKind = 'local',
  ) {
    const kinds = plugins.map((p) => p.kind);
    const twice = kinds.find((k, i) => kinds.indexOf(k) !== i);
    if (twice) throw new Error(`two backend plugins of kind '${twice}'`);
  }

  find(kind: string): AnyPlugin | undefined {
    return this.plugins.find((p) => p.kind === kind);
  }

  remotes(home: string): Remotes {
    return new Remotes(home, this.plugins);
  }

  /** The backend id for `--remote`: absent → the default kind; `''` → the default remote; a name → `kind:NAME`. */
  async backendIdFor(home: string, remote: string | undefined): Promise<string> {
    if (remote === undefined) return this.defaultKind;
    const found = await this.remotes(home).find(remote === '' ? undefined : remote);
    if (this.find(found.kind)?.storesOnly) throw storesOnlyError(found.name, found.kind);
    return `${found.kind}:${found.name}`;
  }

  /**
   * Opens the backend for a recorded id: `kind`, or `kind:NAME` with the remote NAME read from
   * config.json (checked by the plugin's schema; DS0210/DS0211 when it is not there any more).
   * Undefined when no plugin of that kind is built in.
   */
  async open(id: string, options: OpenOptions): Promise<Backend | undefined> {
    const colon = id.indexOf(':');
    const kind = colon < 0 ? id : id.slice(0, colon);
    const plugin = this.find(kind);
    if (!plugin) return undefined;
    const settings = options.settings ? { settings: options.settings } : {};
    if (colon < 0) return plugin.open({ home: options.home, ...settings });
    const remote = await this.remotes(options.home).findOf(kind, id.slice(colon + 1));
    return plugin.open({ home: options.home, remote, ...settings });
  }

  /** Every plugin's own commands (`dstack config <kind>`). */
  async commands(): Promise<CommandClass<DstackContext>[]> {
    return (await Promise.all(this.plugins.map(async (p) => (p.commands ? p.commands() : [])))).flat();
  }
}
