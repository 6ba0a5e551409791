/**
 * `dstack config delete NAME`: removes a remote of any kind from the dstack home's config.json.
 * Nothing on its machines is touched.
 */
import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import { DstackCommand } from '../base.js';
import { confirm } from '../confirm.js';

export class ConfigDeleteCommand extends DstackCommand {
  static override paths = [['config', 'delete']];
  static override usage = Command.Usage({
    category: 'Remotes',
    description: 'delete a remote',
    details: `
      Removes the remote NAME, of any kind, from the configuration (nothing on its machines is touched). Asks first unless \`-y\`.
    `,
    examples: [['Delete the remote lab', 'dstack config delete lab -y']],
  });

  yes = Option.Boolean('-y,--yes', false, { description: 'do not ask for confirmation' });
  name = Option.String({ name: 'NAME' });

  async run(): Promise<number> {
    const file = await this.context.remotes();
    const cfg = await file.read();
    if (!cfg.remotes.some((r) => r.name === this.name)) {
      const known = cfg.remotes.map((r) => r.name);
      throw new DstackError('DS0211', `no remote named '${this.name}'`, {
        hint: known.length ? `configured remotes: ${known.join(', ')}` : 'no remote is configured',
      });
    }
    await confirm(`Delete remote ${this.name}?`, this.yes, `dstack config delete ${this.name} -y`);
    const remotes = cfg.remotes.filter((r) => r.name !== this.name);
    const { default: def, ...rest } = cfg;
    const keepDefault = def !== undefined && def !== this.name;
    await file.write({ ...rest, remotes, ...(keepDefault ? { default: def } : {}) });
    this.context.stderr.write(`Deleted remote '${this.name}'${def === this.name ? '; there is no default remote now' : ''} (${file.path})\n`);
    return 0;
  }
}
