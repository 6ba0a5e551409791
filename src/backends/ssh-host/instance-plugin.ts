/**
 * A cloud's plugin in a few lines: its kind, its remotes' schema and commands, and the provider
 * for a remote — the rest is the generic instance backend. AWS:
 *
 *   export const awsPlugin = instancePlugin<AwsRemote>({
 *     kind: 'aws', describe: 'EC2 instances, launched per job',
 *     configSchema: async () => (await import('./remote-schema.js')).awsRemoteSchema,
 *     addExample: 'dstack config aws --name NAME --region REGION',
 *     columns: (r) => ({ REGION: r.region }),
 *     commands: async () => [(await import('./config-command.js')).ConfigAwsCommand],
 *     provider: (remote, options) => new Ec2Provider(remote, options), // the SDK loads in its methods
 *   });
 *
 * and one line in src/backends/index.ts.
 */
import type { BackendOpenOptions, RemoteConfig } from '../../engine/backend.js';
import type { Plugin } from '../plugin.js';
import type { InstanceProvider } from './instance.js';
import { InstanceBackend, type InstanceSettings } from './instance-backend.js';
import { extraLabels } from './machine.js';

export interface InstancePluginOptions<C extends RemoteConfig> extends Omit<Plugin<C>, 'open'> {
  /** The cloud behind a remote of this kind. Cheap: its SDK loads on first use, in its own file. */
  readonly provider: (remote: C, options: BackendOpenOptions<C>) => InstanceProvider;
}

export function instancePlugin<C extends RemoteConfig>(o: InstancePluginOptions<C>): Plugin<C> {
  const { provider, ...plugin } = o;
  return {
    ...plugin,
    ownsMachines: true,
    open: (options) => {
      if (!options.remote) throw new Error(`the ${o.kind} backend needs a remote (${o.kind}:NAME)`);
      return new InstanceBackend({ home: options.home, remote: options.remote.name, provider: provider(options.remote, options), settings: readSettings(options.settings) });
    },
  };
}

function readSettings(raw: BackendOpenOptions['settings']): InstanceSettings {
  const s = raw ?? {};
  const labels = extraLabels(s.labels);
  const num = (v: unknown): number | undefined => (typeof v === 'number' && v > 0 ? v : undefined);
  const out: { -readonly [K in keyof InstanceSettings]: InstanceSettings[K] } = { labels };
  const sshWaitSeconds = num(s.sshWaitSeconds);
  const heartbeatTtlSeconds = num(s.heartbeatTtlSeconds);
  const cacheBytes = num(s.cacheBytes);
  if (sshWaitSeconds) out.sshWaitSeconds = sshWaitSeconds;
  if (heartbeatTtlSeconds) out.heartbeatTtlSeconds = heartbeatTtlSeconds;
  if (cacheBytes) out.cacheBytes = cacheBytes;
  return out;
}
