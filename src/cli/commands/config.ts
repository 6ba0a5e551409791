/**
 * `dstack config ssh|list|delete`: the remotes `dstack run --remote` can use, kept in the dstack
 * home's config.json (src/backends/ssh/config.ts). Nothing here connects anywhere.
 */
import { open, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { Command, Option } from 'clipanion';
import { checkRemoteName, configPath, formatHostSpec, parseHostSpec, readConfig, writeConfig, type SshRemote } from '../../backends/ssh/config.js';
import { DstackError } from '../../engine/errors.js';
import { bucketColumns } from '../../remote-store/config.js';
import { DstackCommand } from '../base.js';
import { confirm } from '../confirm.js';
import { table } from '../format.js';
import { dstackHome } from '../home.js';

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** An absolute path to a readable private key file; DS0210 otherwise. */
async function checkIdentity(raw: string): Promise<string> {
  const path = resolve(raw.startsWith('~/') ? `${homedir()}${raw.slice(1)}` : raw);
  const bad = (why: string, hint?: string): DstackError =>
    new DstackError('DS0210', `identity file ${path} ${why}`, { hint: hint ?? 'give the private key file, e.g. --identity ~/.ssh/id_ed25519' });
  let info;
  try {
    info = await stat(path);
  } catch {
    throw bad('does not exist');
  }
  if (!info.isFile()) throw bad('is not a file');
  let head: string;
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(64);
      const { bytesRead } = await fh.read(buf, 0, 64, 0);
      head = buf.subarray(0, bytesRead).toString('latin1');
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw bad(`cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (/^(ssh-|ecdsa-|sk-)\S+ AAAA/.test(head)) throw bad('is a public key', `give the private key: --identity ${path.replace(/\.pub$/, '')}`);
  return path;
}

export class ConfigSshCommand extends DstackCommand {
  static override paths = [['config', 'ssh']];
  static override usage = Command.Usage({
    category: 'Remotes',
    description: 'add a pool of your own machines, reached over SSH',
    details: `
      Saves a remote named NAME: the hosts \`dstack run --remote NAME\` may run jobs on, how many jobs each runs at
      once, and the key to log in with. Without \`--identity\`, dstack uses your SSH agent, then ~/.ssh/id_ed25519
      and ~/.ssh/id_rsa. Host keys are checked against ~/.ssh/known_hosts at the first run; nothing connects now.

      The first remote becomes the default (\`--remote\` alone); \`--default\` makes this one the default. An existing
      NAME is replaced only with \`--force\`; \`--name NAME --default\` alone makes an existing remote the default.
    `,
    examples: [
      ['Two machines, one job each', 'dstack config ssh --name lab --host ubuntu@10.0.0.5 --host ubuntu@10.0.0.6'],
      ['A port, a key, two jobs per host', 'dstack config ssh --name gpu --host me@gpu.example.com:2222 --identity ~/.ssh/lab_ed25519 --jobs-per-host 2'],
      ['Replace a remote and make it the default', 'dstack config ssh --name lab --host ubuntu@10.0.0.7 --force --default'],
    ],
  });

  name = Option.String('--name', { required: true, description: 'the remote\'s name, for `--remote NAME`' });
  hosts = Option.Array('--host', [], { description: 'user@host[:port]; repeat for each machine' });
  identity = Option.String('--identity,-i', { description: 'private key file to log in with' });
  jobsPerHost = Option.String('--jobs-per-host', { description: 'jobs one host runs at once (default 1)' });
  makeDefault = Option.Boolean('--default', false, { description: 'make this the default remote' });
  force = Option.Boolean('--force', false, { description: 'replace a remote of the same name' });

  async run(): Promise<number> {
    const home = dstackHome();
    const name = checkRemoteName(this.name);
    const cfg = await readConfig(home);
    const existing = cfg.remotes.find((r) => r.name === name);

    if (this.hosts.length === 0) {
      if (this.makeDefault && existing && this.identity === undefined && this.jobsPerHost === undefined) {
        await writeConfig(home, { ...cfg, default: name });
        this.context.stderr.write(`Remote '${name}' is now the default\n`);
        return 0;
      }
      throw new DstackError('DS0100', 'give at least one --host user@host[:port]', { hint: `dstack config ssh --name ${name} --host ubuntu@10.0.0.5` });
    }
    const hosts = this.hosts.map(parseHostSpec);
    const seen = new Set<string>();
    for (const h of hosts) {
      const key = formatHostSpec(h);
      if (seen.has(key)) throw new DstackError('DS0210', `--host ${key} is given twice`);
      seen.add(key);
    }
    let jobsPerHost = 1;
    if (this.jobsPerHost !== undefined) {
      if (!/^\d+$/.test(this.jobsPerHost) || Number(this.jobsPerHost) < 1 || Number(this.jobsPerHost) > 1000) {
        throw new DstackError('DS0210', `invalid --jobs-per-host '${this.jobsPerHost}'`, { hint: 'expected a whole number from 1 to 1000' });
      }
      jobsPerHost = Number(this.jobsPerHost);
    }
    const identity = this.identity === undefined ? undefined : await checkIdentity(this.identity);
    if (existing && !this.force) {
      throw new DstackError('DS0212', `a remote named '${name}' already exists`, {
        hint: `pass --force to replace it, or delete it first: dstack config delete ${name}`,
      });
    }

    const remote: SshRemote = { name, kind: 'ssh', hosts, ...(identity ? { identity } : {}), jobsPerHost };
    const remotes = existing ? cfg.remotes.map((r) => (r.name === name ? remote : r)) : [...cfg.remotes, remote];
    const isDefault = this.makeDefault || cfg.default === name || !cfg.remotes.some((r) => r.name === cfg.default);
    await writeConfig(home, { ...cfg, remotes, ...(isDefault ? { default: name } : {}) });
    const flag = isDefault ? '--remote' : `--remote ${name}`;
    this.context.stderr.write(
      `${existing ? 'Replaced' : 'Saved'} remote '${name}': ${plural(hosts.length, 'host')}, ${plural(jobsPerHost, 'job')} per host` +
        `${isDefault ? ' (the default)' : ''}; run with \`dstack run WORKFLOW ${flag}\`\n`,
    );
    return 0;
  }
}

export class ConfigListCommand extends DstackCommand {
  static override paths = [['config', 'list']];
  static override usage = Command.Usage({
    category: 'Remotes',
    description: 'list the configured remotes',
    details: `
      Lists the remotes saved with \`dstack config ssh\`: their hosts, jobs per host and key; \`*\` marks the default.
    `,
    examples: [
      ['As a table', 'dstack config list'],
      ['As JSON', 'dstack config list --json'],
    ],
  });

  json = Option.Boolean('--json', false, { description: 'machine-readable output' });

  async run(): Promise<number> {
    const cfg = await readConfig(dstackHome());
    if (this.json) {
      this.context.stdout.write(`${JSON.stringify({ default: cfg.default ?? null, remotes: cfg.remotes }, null, 2)}\n`);
      return 0;
    }
    if (cfg.remotes.length === 0) {
      this.context.stderr.write('No remotes configured; add one with `dstack config ssh --name NAME --host user@host[:port]`\n');
      return 0;
    }
    const rows = cfg.remotes.map((r) => [
      `${r.name}${r.name === cfg.default ? ' *' : ''}`,
      r.kind,
      r.kind === 'ssh' ? r.hosts.map(formatHostSpec).join(',') : (bucketColumns(r).WHERE ?? ''),
      r.kind === 'ssh' ? String(r.jobsPerHost) : '',
      r.kind === 'ssh' ? (r.identity ?? '(agent or ~/.ssh)') : '',
    ]);
    this.context.stdout.write(`${table(['NAME', 'KIND', 'HOSTS', 'JOBS/HOST', 'IDENTITY'], rows)}\n`);
    return 0;
  }
}

export class ConfigDeleteCommand extends DstackCommand {
  static override paths = [['config', 'delete']];
  static override usage = Command.Usage({
    category: 'Remotes',
    description: 'delete a remote',
    details: `
      Removes the remote NAME from the configuration (nothing on its hosts is touched). Asks first unless \`-y\`.
    `,
    examples: [['Delete the remote lab', 'dstack config delete lab -y']],
  });

  yes = Option.Boolean('-y,--yes', false, { description: 'do not ask for confirmation' });
  name = Option.String({ name: 'NAME' });

  async run(): Promise<number> {
    const home = dstackHome();
    const cfg = await readConfig(home);
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
    await writeConfig(home, { ...rest, remotes, ...(keepDefault ? { default: def } : {}) });
    this.context.stderr.write(`Deleted remote '${this.name}'${def === this.name ? '; there is no default remote now' : ''} (${configPath(home)})\n`);
    return 0;
  }
}
