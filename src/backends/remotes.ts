/**
 * The remotes a user has configured, in `${DSTACK_HOME}/config.json` (mode 0600, replaced
 * atomically): `{"default": "lab", "remotes": [{"name": "lab", "kind": "ssh", …}]}`. Each remote is
 * checked by the schema of the plugin of its kind; a kind no plugin offers is DS0210. Top-level keys
 * this module does not know are kept as they are, so later settings can live in the same file.
 *
 * Generic over plugins: nothing here knows what an SSH host or a cloud region is. No network:
 * `dstack config` and `--remote` resolution stay cheap.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RemoteConfig } from '../engine/backend.js';
import { DstackError } from '../engine/errors.js';
import type { AnyPlugin } from './plugin.js';

export interface DstackConfig {
  /** The remote that `--remote` alone means. */
  readonly default?: string;
  readonly remotes: readonly RemoteConfig[];
  readonly [other: string]: unknown;
}

export const configPath = (home: string): string => join(home, 'config.json');

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/i;

/** Checks a remote's name: letters, digits, `-` and `_`, as it appears in `kind:NAME`. */
export function checkRemoteName(name: string): string {
  if (!NAME.test(name)) {
    throw new DstackError('DS0210', `invalid remote name '${name}'`, { hint: 'use letters, digits, - and _ (up to 63), starting with a letter or digit' });
  }
  return name;
}

/** config.json of one dstack home, read through the schemas of `plugins`. */
export class Remotes {
  constructor(
    readonly home: string,
    private readonly plugins: readonly AnyPlugin[],
  ) {}

  get path(): string {
    return configPath(this.home);
  }

  /** The plugins that have remotes (a `dstack config <kind>` command). */
  private configurable(): AnyPlugin[] {
    return this.plugins.filter((p) => p.configSchema !== undefined);
  }

  /** How to add a remote that runs jobs, one example per kind (`dstack config ssh --name NAME --host user@host[:port]`). */
  addExamples(): string[] {
    // For `--remote`: a team bucket runs nothing, so it is not offered here.
    return this.configurable().flatMap((p) => (p.addExample && !p.storesOnly ? [p.addExample] : []));
  }

  private addHint(): string {
    return `add one: ${this.addExamples().join(', or ')}`;
  }

  /** A remote's own columns in `dstack config list`, from its plugin. */
  columnsOf(remote: RemoteConfig): Readonly<Record<string, string>> {
    return this.plugins.find((p) => p.kind === remote.kind)?.columns?.(remote) ?? {};
  }

  private invalid(why: string): DstackError {
    const kinds = this.configurable().map((p) => p.kind);
    return new DstackError('DS0210', `${this.path} is not a valid dstack configuration: ${why}`, {
      hint: `fix or remove the file; \`dstack config ${kinds.length === 1 ? kinds[0] : `<${kinds.join('|')}>`}\` writes a new one`,
    });
  }

  private async check(raw: unknown, index: number): Promise<RemoteConfig> {
    const where = `remotes[${index}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw this.invalid(`${where} is not an object`);
    const r = raw as Record<string, unknown>;
    if (typeof r.name !== 'string' || !NAME.test(r.name)) throw this.invalid(`${where}.name is missing or invalid`);
    const plugin = this.plugins.find((p) => p.kind === r.kind && p.configSchema);
    if (!plugin?.configSchema) {
      const known = this.configurable().map((p) => p.kind);
      throw this.invalid(`${where} (${r.name}) has an unknown kind ${JSON.stringify(r.kind)} (this dstack knows ${known.join(', ')})`);
    }
    const schema = await plugin.configSchema();
    const errors: string[] = [];
    if (!schema(raw, { errors })) throw this.invalid(`${where} (${r.name}) ${schemaError(errors[0])}`);
    return raw as RemoteConfig;
  }

  /** The configuration; an empty one when the file does not exist. A malformed file is DS0210. */
  async read(): Promise<DstackConfig> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { remotes: [] };
      throw e;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw this.invalid((e as Error).message);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw this.invalid('not a JSON object');
    const obj = raw as Record<string, unknown>;
    const remotes = obj.remotes === undefined ? [] : obj.remotes;
    if (!Array.isArray(remotes)) throw this.invalid('"remotes" is not a list');
    const checked: RemoteConfig[] = [];
    for (const [i, r] of remotes.entries()) checked.push(await this.check(r, i));
    if (obj.default !== undefined && typeof obj.default !== 'string') throw this.invalid('"default" is not a name');
    const { default: def, remotes: _ignored, ...rest } = obj;
    return { ...rest, ...(typeof def === 'string' ? { default: def } : {}), remotes: checked };
  }

  /** Replaces the file atomically (a temporary file in the same folder, then rename), mode 0600. */
  async write(cfg: DstackConfig): Promise<void> {
    await mkdir(this.home, { recursive: true });
    const path = this.path;
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const { default: def, remotes, ...rest } = cfg;
    const body = { ...rest, ...(def !== undefined ? { default: def } : {}), remotes };
    try {
      await writeFile(tmp, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600 });
      await chmod(tmp, 0o600); // whatever the umask
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /**
   * The remote named `name`, or the default one when `name` is undefined. DS0211 (exit 2) when there
   * is no such remote, or no default, saying how to add or choose one.
   */
  async find(name?: string): Promise<RemoteConfig> {
    const cfg = await this.read();
    if (name === undefined) {
      if (cfg.remotes.length === 0) throw new DstackError('DS0211', 'no remote is configured', { hint: this.addHint() });
      if (cfg.default === undefined) {
        const kind = (cfg.remotes.find((r) => !this.plugins.find((p) => p.kind === r.kind)?.storesOnly) ?? cfg.remotes[0]!).kind;
        throw new DstackError('DS0211', 'no default remote', {
          hint: `name one with --remote NAME (${cfg.remotes.map((r) => r.name).join(', ')}), or make one the default: dstack config ${kind} --name NAME --default`,
        });
      }
      name = cfg.default;
    }
    const found = cfg.remotes.find((r) => r.name === name);
    if (!found) {
      const known = cfg.remotes.map((r) => r.name);
      throw new DstackError('DS0211', `no remote named '${name}'`, {
        hint: known.length ? `configured remotes: ${known.join(', ')} (see \`dstack config list\`)` : this.addHint(),
      });
    }
    return found;
  }

  /**
   * Adds `remote`, or replaces the one of that name when `force` (DS0212 otherwise). It becomes the
   * default when asked, when it already was, or when there is no (valid) default yet.
   */
  async save(remote: RemoteConfig, o: { readonly force: boolean; readonly makeDefault: boolean }): Promise<{ readonly replaced: boolean; readonly isDefault: boolean }> {
    const cfg = await this.read();
    const replaced = cfg.remotes.some((r) => r.name === remote.name);
    if (replaced && !o.force) {
      throw new DstackError('DS0212', `a remote named '${remote.name}' already exists`, {
        hint: `pass --force to replace it, or delete it first: dstack config delete ${remote.name}`,
      });
    }
    const remotes = replaced ? cfg.remotes.map((r) => (r.name === remote.name ? remote : r)) : [...cfg.remotes, remote];
    const isDefault = o.makeDefault || cfg.default === remote.name || !cfg.remotes.some((r) => r.name === cfg.default);
    await this.write({ ...cfg, remotes, ...(isDefault ? { default: remote.name } : {}) });
    return { replaced, isDefault };
  }

  /** Makes an existing remote the default; false when there is none of that name. */
  async makeDefault(name: string): Promise<boolean> {
    const cfg = await this.read();
    if (!cfg.remotes.some((r) => r.name === name)) return false;
    await this.write({ ...cfg, default: name });
    return true;
  }

  /** The remote named `name` if it is of `kind`; DS0211 otherwise (a backend opened for a remote that changed kind). */
  async findOf<C extends RemoteConfig>(kind: string, name: string): Promise<C> {
    const found = await this.find(name);
    if (found.kind !== kind) {
      throw new DstackError('DS0211', `remote '${name}' is now of kind ${found.kind}, not ${kind}`, { hint: 'see `dstack config list`' });
    }
    return found as C;
  }
}

/** typanion's `.hosts[0].port: Expected …` as `hosts[0].port: expected …`; a whole-entry error as is. */
function schemaError(raw: string | undefined): string {
  if (!raw) return 'is not valid';
  const m = /^\.([^:]*): (.*)$/s.exec(raw);
  if (!m) return raw.charAt(0).toLowerCase() + raw.slice(1);
  return `${m[1]}: ${m[2]!.charAt(0).toLowerCase()}${m[2]!.slice(1)}`;
}
