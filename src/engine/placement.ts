/**
 * Where a run goes, decided in one place from what the named workflow asks (`resources.local:
 * true` / `resources.remote: true`, dstack 0.7) and what the command line says (`--remote`,
 * `--remote NAME`, nothing). The command line wins, as it does for every other field it can
 * override; without it, `local: true` runs locally whatever remotes are configured, and `remote:
 * true` runs on the default remote (the CLI says clearly when there is none).
 */
import type { Placement } from './types.js';

export type PlacementChoice =
  | { readonly kind: 'local' }
  /** `name` undefined: the default remote. `why` says where the request came from, for messages. */
  | { readonly kind: 'remote'; readonly name?: string; readonly why: 'command line' | 'workflow' };

/** `remote`: what `--remote` said — undefined when absent, '' for `--remote` alone, else the name. */
export function choosePlacement(workflow: Placement | undefined, remote: string | undefined): PlacementChoice {
  if (remote !== undefined) return remote === '' ? { kind: 'remote', why: 'command line' } : { kind: 'remote', name: remote, why: 'command line' };
  if (workflow === 'remote') return { kind: 'remote', why: 'workflow' };
  return { kind: 'local' };
}
