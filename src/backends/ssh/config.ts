/**
 * An SSH pool as saved in config.json (src/backends/remotes.ts keeps the file):
 * `{name, kind: "ssh", hosts: [{user, host, port}], identity?, jobsPerHost?}`, and its schema.
 * No SSH here: `dstack config` and `--remote` resolution stay cheap.
 */
import * as t from 'typanion';
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

const isHost = t.isObject({
  user: t.cascade(t.isString(), t.hasMinLength(1)),
  host: t.cascade(t.isString(), t.hasMinLength(1)),
  port: t.cascade(t.isNumber(), t.isInteger(), t.isInInclusiveRange(1, 65535)),
});

/** Unknown keys are refused: a misspelt `identiy` must not be silently ignored. */
export const sshRemoteSchema: t.StrictValidator<unknown, SshRemote> = t.isObject({
  name: t.isString(),
  kind: t.isLiteral('ssh'),
  hosts: t.cascade(t.isArray(isHost), t.hasMinLength(1)),
  identity: t.isOptional(t.isString()),
  jobsPerHost: t.isOptional(t.cascade(t.isNumber(), t.isInteger(), t.isAtLeast(1))),
});

/** The remote's columns in `dstack config list`. */
export const sshColumns = (r: SshRemote): Record<string, string> => ({
  HOSTS: r.hosts.map(formatHostSpec).join(','),
  'JOBS/HOST': String(jobsPerHostOf(r)),
  IDENTITY: r.identity ?? '(agent or ~/.ssh)',
});
