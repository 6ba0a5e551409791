/**
 * A backend plugin as the CLI sees it: the engine's half (src/engine/backend.ts: kind, describe,
 * configSchema, open) and the commands and words the CLI shows for it, typed here so that the
 * engine never loads clipanion. Built-in plugins are a static list (src/backends/index.ts); adding
 * one — a cloud — touches that list and its own folder, no CLI file and no other backend.
 */
import type { CommandClass } from 'clipanion';
import type { BackendPlugin, RemoteConfig } from '../engine/backend.js';
import type { DstackContext } from './command.js';

export interface Plugin<C extends RemoteConfig = RemoteConfig> extends BackendPlugin<C> {
  /**
   * The plugin's own commands — `dstack config <kind>`, which adds or replaces a remote of this
   * kind — one clipanion command per file, loaded only when `dstack config` is run.
   */
  readonly commands?: () => Promise<readonly CommandClass<DstackContext>[]>;
  /** How to add a remote of this kind, for hints (`dstack config ssh --name NAME --host user@host[:port]`). */
  readonly addExample?: string;
  /**
   * Its remotes store the team's runs (a team bucket: `folder`, `s3`) and run nothing: `--remote NAME`
   * of one is refused (DS0268) and it never becomes the default remote. Its `open` throws.
   */
  readonly storesOnly?: boolean;
  /** A remote's own columns in `dstack config list` (HOSTS, REGION, …), in order. */
  readonly columns?: (remote: C) => Readonly<Record<string, string>>;
}

/** A plugin of any remote kind, as the lists hold them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyPlugin = Plugin<any>;
