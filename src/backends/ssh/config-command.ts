/**
 * `dstack config ssh`: saves a pool of the user's own machines as a remote in the dstack home's
 * config.json (src/backends/remotes.ts). Nothing here connects anywhere. The SSH plugin's own
 * command: the CLI finds it through the plugin (src/backends/ssh/index.ts), not by name.
 */
import { open, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import { DstackCommand } from '../command.js';
import { checkRemoteName } from '../remotes.js';
import { formatHostSpec, parseHostSpec, type SshRemote } from './remote.js';

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
    const remotes = await this.context.remotes();
    const name = checkRemoteName(this.name);
    if (this.hosts.length === 0) {
      if (this.makeDefault && this.identity === undefined && this.jobsPerHost === undefined && (await remotes.makeDefault(name))) {
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
    const remote: SshRemote = { name, kind: 'ssh', hosts, ...(identity ? { identity } : {}), jobsPerHost };
    const saved = await remotes.save(remote, { force: this.force, makeDefault: this.makeDefault });
    const flag = saved.isDefault ? '--remote' : `--remote ${name}`;
    this.context.stderr.write(
      `${saved.replaced ? 'Replaced' : 'Saved'} remote '${name}': ${plural(hosts.length, 'host')}, ${plural(jobsPerHost, 'job')} per host` +
        `${saved.isDefault ? ' (the default)' : ''}; run with \`dstack run WORKFLOW ${flag}\`\n`,
    );
    return 0;
  }
}
