/**
 * `dstack config aws`: saves an AWS remote in the dstack home's config.json (src/backends/remotes.ts).
 * Nothing here talks to AWS, and nothing secret is written: credentials stay in the standard AWS
 * chain (environment, ~/.aws, SSO, an instance role); a profile is only named.
 */
import { Command, Option } from 'clipanion';
import ms from 'ms';
import { DstackError } from '../../engine/errors.js';
import { DstackCommand } from '../command.js';
import { checkRemoteName } from '../remotes.js';
import { checkAwsRemote, DEFAULT_DEAD_MAN_MINUTES, type AwsRemote } from './config.js';

export class ConfigAwsCommand extends DstackCommand {
  static override paths = [['config', 'aws']];
  static override usage = Command.Usage({
    category: 'Remotes',
    description: 'add an AWS account and region to run jobs on EC2',
    details: `
      Saves a remote named NAME: \`dstack run --remote NAME\` launches an EC2 instance per job (the cheapest type that fits
      its resources; spot when it is \`interruptible\`), runs the job there over SSH and terminates the instance.
      Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID…, AWS_PROFILE or \`--profile\`, \`aws sso login\`, an
      instance role): dstack stores none. \`AWS_ENDPOINT_URL\` is honoured.

      \`--bucket\` is the team's S3 bucket. \`--subnet\` launches into that subnet (its VPC and zone) instead of the default
      VPC. \`--ssh-cidr\` is who may reach the instances' SSH port (default: this machine's public address, looked up at
      launch). \`--no-on-demand-fallback\` keeps interruptible jobs on spot instances only. \`--dead-man-minutes\` (default
      ${DEFAULT_DEAD_MAN_MINUTES}) is how long an instance outlives a dstack that stopped renewing its heartbeat;
      \`--max-duration\` powers every instance off after that long, renewed or not.

      The first remote becomes the default (\`--remote\` alone); \`--default\` makes this one the default. An existing NAME
      is replaced only with \`--force\`; \`--name NAME --default\` alone makes an existing remote the default.
    `,
    examples: [
      ['An account\'s default profile, us-east-1', 'dstack config aws --name team --region us-east-1 --bucket my-team-dstack'],
      ['A named profile, a subnet, SSH from an office range', 'dstack config aws --name lab --profile ml --region eu-west-1 --bucket lab-runs --subnet subnet-0abc1234 --ssh-cidr 198.51.100.0/24'],
      ['Spot only, instances off after 12 hours whatever happens', 'dstack config aws --name cheap --bucket my-team-dstack --no-on-demand-fallback --max-duration 12h --force'],
    ],
  });

  name = Option.String('--name', { required: true, description: 'the remote\'s name, for `--remote NAME`' });
  region = Option.String('--region', { description: 'AWS region (default: AWS_REGION, then the profile\'s)' });
  profile = Option.String('--profile', { description: 'a profile of ~/.aws/config (default: AWS_PROFILE, then default)' });
  bucket = Option.String('--bucket', { description: 'the team\'s S3 bucket' });
  subnet = Option.String('--subnet', { description: 'launch into this subnet (default: the default VPC)' });
  sshCidr = Option.String('--ssh-cidr', { description: 'who may reach port 22 (default: this machine\'s public address /32)' });
  onDemandFallback = Option.Boolean('--on-demand-fallback', { description: 'interruptible jobs may fall back to on-demand (default: yes)' });
  deadManMinutes = Option.String('--dead-man-minutes', { description: `minutes an instance outlives a silent dstack (default ${DEFAULT_DEAD_MAN_MINUTES})` });
  maxDuration = Option.String('--max-duration', { description: 'power every instance off after this long (e.g. 12h; default: no limit)' });
  makeDefault = Option.Boolean('--default', false, { description: 'make this the default remote' });
  force = Option.Boolean('--force', false, { description: 'replace a remote of the same name' });

  async run(): Promise<number> {
    const remotes = await this.context.remotes();
    const name = checkRemoteName(this.name);
    const cfg = await remotes.read();
    const existing = cfg.remotes.find((r) => r.name === name);
    const settings = [this.region, this.profile, this.bucket, this.subnet, this.sshCidr, this.onDemandFallback, this.deadManMinutes, this.maxDuration];
    if (this.makeDefault && existing && settings.every((s) => s === undefined)) {
      await remotes.write({ ...cfg, default: name });
      this.context.stderr.write(`Remote '${name}' is now the default\n`);
      return 0;
    }
    if (this.bucket === undefined) {
      throw new DstackError('DS0100', 'give the team\'s S3 bucket: --bucket NAME', { hint: `dstack config aws --name ${name} --region us-east-1 --bucket my-team-dstack` });
    }
    const remote = checkAwsRemote(
      {
        name,
        kind: 'aws',
        ...(this.region !== undefined ? { region: this.region } : {}),
        ...(this.profile !== undefined ? { profile: this.profile } : {}),
        bucket: this.bucket,
        ...(this.subnet !== undefined ? { subnet: this.subnet } : {}),
        ...(this.sshCidr !== undefined ? { sshCidr: this.sshCidr } : {}),
        ...(this.onDemandFallback !== undefined ? { onDemandFallback: this.onDemandFallback } : {}),
        ...(this.deadManMinutes !== undefined ? { deadManMinutes: wholeMinutes(this.deadManMinutes) } : {}),
        ...(this.maxDuration !== undefined ? { maxDurationSeconds: durationSeconds(this.maxDuration) } : {}),
      } satisfies AwsRemote,
    );
    if (existing && !this.force) {
      throw new DstackError('DS0212', `a remote named '${name}' already exists`, { hint: `pass --force to replace it, or delete it first: dstack config delete ${name}` });
    }
    const next = existing ? cfg.remotes.map((r) => (r.name === name ? remote : r)) : [...cfg.remotes, remote];
    const isDefault = this.makeDefault || cfg.default === name || !cfg.remotes.some((r) => r.name === cfg.default);
    await remotes.write({ ...cfg, remotes: next, ...(isDefault ? { default: name } : {}) });
    const flag = isDefault ? '--remote' : `--remote ${name}`;
    this.context.stderr.write(
      `${existing ? 'Replaced' : 'Saved'} remote '${name}': AWS ${remote.region ?? '(region from AWS_REGION or the profile)'}, bucket ${remote.bucket}` +
        `${isDefault ? ' (the default)' : ''}; run with \`dstack run WORKFLOW ${flag}\`\n`,
    );
    return 0;
  }
}

function wholeMinutes(raw: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 1440) {
    throw new DstackError('DS0210', `invalid --dead-man-minutes '${raw}'`, { hint: 'expected a whole number of minutes from 1 to 1440' });
  }
  return Number(raw);
}

function durationSeconds(raw: string): number {
  const v = /^\d+$/.test(raw) ? undefined : (ms(raw as Parameters<typeof ms>[0]) as number | undefined);
  if (v === undefined || !Number.isFinite(v) || v < 60_000) {
    throw new DstackError('DS0210', `invalid --max-duration '${raw}'`, { hint: 'expected a duration of at least a minute, e.g. 90m, 12h, 2d' });
  }
  return Math.round(v / 1000);
}
