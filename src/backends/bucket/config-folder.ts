import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import { DstackCommand } from '../command.js';
import { checkRemoteName } from '../remotes.js';
import { saveBucketRemote } from './save.js';

export class ConfigFolderCommand extends DstackCommand {
  static override paths = [['config', 'folder']];
  static override usage = Command.Usage({
    category: 'Remotes',
    description: 'add a shared folder as the team bucket',
    details: `
      Saves a remote named NAME that keeps the team's runs, artifacts, tags and logs in a folder every teammate
      mounts (NFS, SMB, or any path), laid out like an S3 bucket. \`dstack push\` sends runs there, \`dstack pull\` and
      \`dstack ps --remote\` read them, and runs reuse each other's jobs through it. The folder must exist.
    `,
    examples: [
      ['A team folder on an NFS mount', 'dstack config folder --name team --path /mnt/team/dstack'],
      ['Move it elsewhere', 'dstack config folder --name team --path /srv/dstack --force'],
    ],
  });

  name = Option.String('--name', { required: true, description: "the remote's name, for `--remote NAME`" });
  folder = Option.String('--path', { required: true, description: 'the shared folder' });
  force = Option.Boolean('--force', false, { description: 'replace a remote of the same name' });

  async run(): Promise<number> {
    const path = resolve(this.folder);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isDirectory()) {
      throw new DstackError('DS0274', `the shared folder ${path} ${st ? 'is not a folder' : 'does not exist'}`, {
        hint: `create it (or mount the share there) first: mkdir -p ${path}`,
      });
    }
    const { replaced } = await saveBucketRemote(await this.context.remotes(), { name: checkRemoteName(this.name), kind: 'folder', path }, this.force);
    this.context.stderr.write(`${replaced ? 'Replaced' : 'Saved'} remote '${this.name}': the team bucket in ${path}; send a run there with \`dstack push RUN\`\n`);
    return 0;
  }
}
