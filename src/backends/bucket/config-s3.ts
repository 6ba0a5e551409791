import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import { checkBucketName, type S3Remote } from '../../remote-store/config.js';
import { DstackCommand } from '../command.js';
import { checkRemoteName } from '../remotes.js';
import { saveBucketRemote } from './save.js';

export class ConfigS3Command extends DstackCommand {
  static override paths = [['config', 's3']];
  static override usage = Command.Usage({
    category: 'Remotes',
    description: 'add an S3 bucket as the team bucket',
    details: `
      Saves a remote named NAME that keeps the team's runs, artifacts, tags and logs in the S3 bucket BUCKET (under
      PREFIX when given). Credentials come from the AWS SDK's usual chain (environment, \`~/.aws\` with \`--profile\`, SSO,
      an instance role) and are never stored. Nothing connects unless \`--create\`, which creates the bucket when it does
      not exist. \`AWS_ENDPOINT_URL\` (or \`AWS_ENDPOINT_URL_S3\`) points dstack at an S3-compatible server.
    `,
    examples: [
      ['A team bucket', 'dstack config s3 --name team --bucket acme-dstack --region eu-west-1'],
      ['Under a prefix, with a profile, creating the bucket', 'dstack config s3 --name team --bucket acme-ml --prefix dstack --profile ml --create'],
    ],
  });

  name = Option.String('--name', { required: true, description: "the remote's name, for `--remote NAME`" });
  bucket = Option.String('--bucket', { required: true, description: 'the S3 bucket' });
  prefix = Option.String('--prefix', { description: 'keep everything under this key prefix' });
  region = Option.String('--region', { description: "the bucket's region (default: the SDK's)" });
  profile = Option.String('--profile', { description: 'a profile of ~/.aws/config' });
  create = Option.Boolean('--create', false, { description: 'create the bucket if it does not exist' });
  force = Option.Boolean('--force', false, { description: 'replace a remote of the same name' });

  async run(): Promise<number> {
    if (this.prefix !== undefined && (this.prefix.split('/').some((p) => p === '.' || p === '..') || /\s/.test(this.prefix))) {
      throw new DstackError('DS0210', `invalid --prefix '${this.prefix}'`, { hint: 'a key prefix such as dstack or team/ml' });
    }
    const remote: S3Remote = {
      name: checkRemoteName(this.name),
      kind: 's3',
      bucket: checkBucketName(this.bucket),
      ...(this.prefix ? { prefix: this.prefix.replace(/^\/+|\/+$/g, '') } : {}),
      ...(this.region ? { region: this.region } : {}),
      ...(this.profile ? { profile: this.profile } : {}),
    };
    if (this.create) await this.ensureBucket(remote);
    const { replaced } = await saveBucketRemote(await this.context.remotes(), remote, this.force);
    this.context.stderr.write(`${replaced ? 'Replaced' : 'Saved'} remote '${this.name}': the team bucket s3://${remote.bucket}; send a run there with \`dstack push RUN\`\n`);
    return 0;
  }

  private async ensureBucket(remote: S3Remote): Promise<void> {
    const { openBucket } = await import('../../remote-store/config.js');
    const bucket = await openBucket(remote);
    try {
      await bucket.check();
    } catch (e) {
      if (!(e instanceof DstackError) || e.code !== 'DS0260' || !bucket.create) throw e;
      await bucket.create();
      this.context.stderr.write(`Created the bucket s3://${remote.bucket}\n`);
    } finally {
      await bucket.close();
    }
  }
}
