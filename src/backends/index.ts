/**
 * The built-in backend plugins: a static list compiled into the binary. Remote plugins (ssh, aws,
 * gcp) join this list; each loads its SDK lazily inside its own folder.
 */
import type { Backend, BackendOpenOptions, BackendPlugin } from '../engine/backend.js';
import { localPlugin } from './local/index.js';
import { sshPlugin } from './ssh/index.js';

export const plugins: readonly BackendPlugin[] = [localPlugin, sshPlugin];

/**
 * Opens the backend for a recorded id: `local`, or `<plugin>:<remote name>` — the remote's name
 * reaches the plugin as `config.name`.
 */
export function openBackend(id: string, options: BackendOpenOptions): Backend | undefined {
  const colon = id.indexOf(':');
  const name = colon < 0 ? id : id.slice(0, colon);
  const plugin = plugins.find((p) => p.name === name);
  if (!plugin) return undefined;
  if (colon < 0) return plugin.open(options);
  return plugin.open({ ...options, config: { ...options.config, name: id.slice(colon + 1) } });
}
