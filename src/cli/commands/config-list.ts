/**
 * `dstack config list`: the remotes in the dstack home's config.json, of every kind — each
 * plugin gives its remotes' own columns (src/backends/plugin.ts). Nothing here connects anywhere.
 */
import { Command, Option } from 'clipanion';
import { DstackCommand } from '../base.js';
import { table } from '../format.js';

export class ConfigListCommand extends DstackCommand {
  static override paths = [['config', 'list']];
  static override usage = Command.Usage({
    category: 'Remotes',
    description: 'list the configured remotes',
    details: `
      Lists the remotes saved with \`dstack config KIND\` (\`dstack config ssh\` for a pool of your own machines), each
      with what its kind shows (an SSH pool: its hosts, jobs per host and key); \`*\` marks the default.
    `,
    examples: [
      ['As a table', 'dstack config list'],
      ['As JSON', 'dstack config list --json'],
    ],
  });

  json = Option.Boolean('--json', false, { description: 'machine-readable output' });

  async run(): Promise<number> {
    const remotes = await this.context.remotes();
    const cfg = await remotes.read();
    if (this.json) {
      this.context.stdout.write(`${JSON.stringify({ default: cfg.default ?? null, remotes: cfg.remotes }, null, 2)}\n`);
      return 0;
    }
    if (cfg.remotes.length === 0) {
      this.context.stderr.write(`No remotes configured; add one with ${remotes.addExamples().map((e) => `\`${e}\``).join(' or ')}\n`);
      return 0;
    }
    // Each kind brings its own columns; a remote of another kind leaves them empty.
    const own = cfg.remotes.map((r) => remotes.columnsOf(r));
    const columns = [...new Set(own.flatMap((c) => Object.keys(c)))];
    const rows = cfg.remotes.map((r, i) => [`${r.name}${r.name === cfg.default ? ' *' : ''}`, r.kind, ...columns.map((c) => own[i]![c] ?? '-')]);
    this.context.stdout.write(`${table(['NAME', 'KIND', ...columns], rows)}\n`);
    return 0;
  }
}
