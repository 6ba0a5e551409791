/**
 * An SSH pool as saved in config.json (src/backends/remotes.ts keeps the file):
 * `{name, kind: "ssh", hosts: [{user, host, port}], identity?, jobsPerHost?}`; its schema is
 * remote-schema.ts, loaded only when config.json is read. No SSH here.
 */
import type { RemoteConfig } from '../../engine/backend.js';
import { formatHostSpec, type SshHostSpec } from '../ssh-host/host-spec.js';

export { formatHostSpec, parseHostSpec, type SshHostSpec } from '../ssh-host/host-spec.js';

export interface SshRemote extends RemoteConfig {
  readonly kind: 'ssh';
  readonly hosts: readonly SshHostSpec[];
  /** An absolute path to a private key; absent: the agent, then ~/.ssh/id_ed25519, id_rsa. */
  readonly identity?: string;
  /** How many jobs one host runs at once; absent in a hand-written file: 1. */
  readonly jobsPerHost?: number;
}

export const jobsPerHostOf = (remote: SshRemote): number => remote.jobsPerHost ?? 1;

/** The remote's columns in `dstack config list`. */
export const sshColumns = (r: SshRemote): Record<string, string> => ({
  HOSTS: r.hosts.map(formatHostSpec).join(','),
  'JOBS/HOST': String(jobsPerHostOf(r)),
  IDENTITY: r.identity ?? '(agent or ~/.ssh)',
});
