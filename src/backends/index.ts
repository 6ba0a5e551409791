/**
 * The built-in backend plugins: a static list compiled into the binary. Remote plugins (ssh, aws,
 * gcp) join this list; each loads its SDK lazily inside its own folder.
 */
import type { Backend, BackendOpenOptions, BackendPlugin } from '../engine/backend.js';
import { localPlugin } from './local/index.js';

export const plugins: readonly BackendPlugin[] = [localPlugin];

/** Opens the backend for a recorded id: `local`, or `<plugin>:<remote name>`. */
export function openBackend(id: string, options: BackendOpenOptions): Backend | undefined {
  const [name] = id.split(':', 1);
  return plugins.find((p) => p.name === name)?.open(options);
}
