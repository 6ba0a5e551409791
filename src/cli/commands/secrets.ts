/**
 * `dstack secrets add|list|delete`: values live in `secrets.json` in the dstack home (mode 0600),
 * outside the run records; a job gets them as `${{ secrets.NAME }}` at execution only.
 */
import { Writable } from 'node:stream';
import { createInterface } from 'node:readline/promises';
import { Command, Option } from 'clipanion';
import { DstackError } from '../../engine/errors.js';
import { DstackCommand } from '../base.js';
import { confirm } from '../confirm.js';
import { readSecrets, writeSecrets } from '../secrets-file.js';
import { dstackHome } from '../home.js';

/** The names `${{ secrets.NAME }}` accepts. */
const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkSecretName(name: string): void {
  if (!SECRET_NAME.test(name)) {
    throw new DstackError('DS0108', `'${name}' is not a valid secret name`, {
      hint: 'use letters, digits and `_`, not starting with a digit, e.g. WANDB_API_KEY',
    });
  }
}

export class SecretsAddCommand extends DstackCommand {
  static override paths = [['secrets', 'add']];
  static override usage = Command.Usage({
    category: 'Secrets',
    description: 'add or replace a secret',
    details: `
      Stores the secret NAME, which workflows use as \`\${{ secrets.NAME }}\`. Without VALUE, reads it from standard
      input: a prompt that does not echo on a terminal, or everything piped in (less one trailing newline). Prefer
      that: a VALUE on the command line lands in your shell history. Values are kept in \`secrets.json\` in the dstack
      home (mode 0600), never in run records or logs.
    `,
    examples: [
      ['Type the value at a prompt', 'dstack secrets add WANDB_API_KEY'],
      ['Pipe it from a file or a password manager', 'dstack secrets add HF_TOKEN < ~/.hf-token'],
    ],
  });

  name = Option.String({ name: 'NAME' });
  value = Option.String({ required: false, name: 'VALUE' });

  async run(): Promise<number> {
    checkSecretName(this.name);
    const value = this.value ?? (await readValue(this.name, this.context.stdin, this.context.stderr));
    if (value === '') throw new DstackError('DS0100', `no value given for secret ${this.name}`, { hint: `type it at the prompt, or pipe it in: dstack secrets add ${this.name} < FILE` });
    const home = dstackHome();
    const secrets = readSecrets(home);
    const existed = Object.hasOwn(secrets, this.name);
    writeSecrets(home, { ...secrets, [this.name]: value });
    this.context.stderr.write(`${existed ? 'Replaced' : 'Added'} secret ${this.name}\n`);
    return 0;
  }
}

/** A prompt without echo on a terminal; otherwise all of stdin less one trailing newline. */
async function readValue(name: string, stdin: NodeJS.ReadableStream, stderr: NodeJS.WritableStream): Promise<string> {
  const input = stdin as NodeJS.ReadStream;
  if (!input.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of input) chunks.push(Buffer.from(chunk as Buffer));
    return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  }
  let muted = false;
  // readline echoes what is typed to its output: hand it one that drops writes while the value is typed.
  const output = new Writable({
    write(chunk: Buffer, _enc, done): void {
      if (!muted) stderr.write(chunk);
      done();
    },
  });
  const rl = createInterface({ input, output, terminal: true });
  try {
    const answer = new Promise<string>((resolve, reject) => {
      rl.on('SIGINT', () => reject(new DstackError('DS0400', 'cancelled')));
      rl.question(`Value of ${name}: `).then(resolve, reject);
    });
    muted = true;
    return await answer;
  } finally {
    muted = false;
    stderr.write('\n');
    rl.close();
  }
}

export class SecretsListCommand extends DstackCommand {
  static override paths = [['secrets', 'list'], ['secrets']];
  static override usage = Command.Usage({
    category: 'Secrets',
    description: 'list the names of the secrets',
    details: 'Lists the names of the secrets, one a line; values are never shown.',
    examples: [
      ['Every secret name', 'dstack secrets list'],
      ['As JSON', 'dstack secrets list --json'],
    ],
  });

  json = Option.Boolean('--json', false, { description: 'machine-readable output' });

  async run(): Promise<number> {
    const names = Object.keys(readSecrets(dstackHome())).sort();
    if (this.json) {
      this.context.stdout.write(`${JSON.stringify(names)}\n`);
    } else if (names.length === 0) {
      this.context.stderr.write('No secrets yet. Add one with `dstack secrets add NAME`.\n');
    } else {
      this.context.stdout.write(names.map((n) => `${n}\n`).join(''));
    }
    return 0;
  }
}

export class SecretsDeleteCommand extends DstackCommand {
  static override paths = [['secrets', 'delete']];
  static override usage = Command.Usage({
    category: 'Secrets',
    description: 'delete a secret',
    details: 'Deletes the secret NAME (asks first unless `-y`); workflows that still use it fail with DS0016 until it is added again.',
    examples: [
      ['Delete a secret', 'dstack secrets delete WANDB_API_KEY'],
      ['Without asking (in a script)', 'dstack secrets delete WANDB_API_KEY -y'],
    ],
  });

  yes = Option.Boolean('-y,--yes', false, { description: 'do not ask for confirmation' });
  name = Option.String({ name: 'NAME' });

  async run(): Promise<number> {
    const home = dstackHome();
    const secrets = readSecrets(home);
    if (!Object.hasOwn(secrets, this.name)) {
      throw new DstackError('DS0016', `no secret named '${this.name}'`, { hint: 'list them with `dstack secrets list`' });
    }
    await confirm(`Delete secret ${this.name}?`, this.yes, `dstack secrets delete ${this.name} -y`);
    const { [this.name]: _deleted, ...rest } = secrets;
    writeSecrets(home, rest);
    this.context.stderr.write(`Deleted secret ${this.name}\n`);
    return 0;
  }
}

export const secretsCommands = [SecretsAddCommand, SecretsListCommand, SecretsDeleteCommand];
