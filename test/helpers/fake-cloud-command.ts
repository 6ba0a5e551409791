/**
 * `dstack config fakecloud`: the fake cloud's own command (fake-cloud.ts), written as a real cloud's
 * would be — a plugin command deriving from the commands' base, saving through the context's
 * remotes — and joined to the CLI only through the plugin.
 */
import { Command, Option } from 'clipanion';
import { DstackCommand } from '../../src/backends/command.js';
import { checkRemoteName } from '../../src/backends/remotes.js';
import type { FakeCloudRemote } from './fake-cloud.js';

export class ConfigFakeCloudCommand extends DstackCommand {
  static override paths = [['config', 'fakecloud']];
  static override usage = Command.Usage({
    category: 'Remotes',
    description: 'add a fake cloud (tests)',
    examples: [['A fake cloud in eu-1', 'dstack config fakecloud --name fc --region eu-1']],
  });

  name = Option.String('--name', { required: true });
  region = Option.String('--region', { required: true });
  force = Option.Boolean('--force', false);
  makeDefault = Option.Boolean('--default', false);

  async run(): Promise<number> {
    const remote: FakeCloudRemote = { name: checkRemoteName(this.name), kind: 'fakecloud', region: this.region };
    const saved = await (await this.context.remotes()).save(remote, { force: this.force, makeDefault: this.makeDefault });
    this.context.stderr.write(`${saved.replaced ? 'Replaced' : 'Saved'} remote '${remote.name}' in ${remote.region}${saved.isDefault ? ' (the default)' : ''}\n`);
    return 0;
  }
}
