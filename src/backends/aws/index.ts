/**
 * The AWS plugin: `--remote NAME` for a remote of `dstack config aws` runs each job on an EC2
 * instance of its own — the generic instance backend (src/backends/ssh-host/instance-backend.ts)
 * over the Ec2Provider. Opening it costs nothing: the provider loads on its first call (lazy-provider.ts),
 * the SDK on the first call to AWS (sdk.ts).
 *
 * The dead-man switch's ttl is the remote's `deadManMinutes` (default 15). Test knobs, read from the
 * environment because the end-to-end tests run the CLI as a child: `DSTACK_HEARTBEAT_TTL` (seconds)
 * overrides the ttl, `DSTACK_INSTANCE_SSH_WAIT` (seconds) how long SSH and Docker are waited for;
 * `DSTACK_INSTANCE_ADDRESS_MAP` is address.ts's.
 */
import type { BackendOpenOptions } from '../../engine/backend.js';
import type { Plugin } from '../plugin.js';
import { instancePlugin } from '../ssh-host/instance-plugin.js';
import type { AwsRemote } from './config.js';
import { LazyEc2Provider } from './lazy-provider.js';

/** As config.ts's, which is not loaded here (typanion). */
const DEFAULT_DEAD_MAN_MINUTES = 15;

const seconds = (v: string | undefined): number | undefined => {
  const n = Number(v);
  return v && Number.isFinite(n) && n > 0 ? n : undefined;
};

const base = instancePlugin<AwsRemote>({
  kind: 'aws',
  describe: 'EC2 instances, one per job',
  configSchema: async () => (await import('./config.js')).awsRemoteSchema,
  addExample: 'dstack config aws --name NAME --region REGION --bucket BUCKET',
  columns: (r) => ({ REGION: r.region ?? '(AWS_REGION)', PROFILE: r.profile ?? '(default)', BUCKET: r.bucket, SUBNET: r.subnet ?? '(default VPC)' }),
  commands: async () => [(await import('./config-command.js')).ConfigAwsCommand],
  provider: (remote, options) => new LazyEc2Provider(remote, options.home),
});

function settingsOf(options: BackendOpenOptions<AwsRemote>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const ttl = seconds(env.DSTACK_HEARTBEAT_TTL) ?? (options.remote?.deadManMinutes ?? DEFAULT_DEAD_MAN_MINUTES) * 60;
  const wait = seconds(env.DSTACK_INSTANCE_SSH_WAIT);
  return { heartbeatTtlSeconds: ttl, ...(wait ? { sshWaitSeconds: wait } : {}), ...options.settings };
}

export const awsPlugin: Plugin<AwsRemote> = {
  ...base,
  open: (options) => base.open({ ...options, settings: settingsOf(options, process.env) }),
};
