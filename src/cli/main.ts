/**
 * The entry point: builds the clipanion CLI from one command per file, routes every error to
 * stderr with a code and exit status (clipanion writes errors to stdout by default), and maps
 * usage mistakes to exit 2.
 *
 * Commands are loaded by name: `dstack ps` evaluates only ps's module (each is its own chunk in
 * the bundle), so start-up does not grow with the number of commands. Help, and a name that is not
 * a command, load them all so clipanion can list them and suggest the nearest.
 */
import { Builtins, Cli, type CommandClass } from 'clipanion';
import { reportError } from './base.js';
import { VERSION } from './version.js';

type Loader = () => Promise<readonly CommandClass[]>;

const COMMANDS: Readonly<Record<string, Loader>> = {
  run: async () => [(await import('./commands/run.js')).RunCommand],
  ps: async () => [(await import('./commands/ps.js')).PsCommand],
  logs: async () => [(await import('./commands/logs.js')).LogsCommand],
  stop: async () => [(await import('./commands/stop.js')).StopCommand],
  rm: async () => [(await import('./commands/rm.js')).RmCommand],
  ls: async () => [(await import('./commands/ls.js')).LsCommand],
  cp: async () => [(await import('./commands/cp.js')).CpCommand],
  tags: async () => (await import('./commands/tags.js')).tagsCommands,
  prune: async () => [(await import('./commands/prune.js')).PruneCommand],
  store: async () => [(await import('./commands/store-verify.js')).StoreVerifyCommand],
  secrets: async () => (await import('./commands/secrets.js')).secretsCommands,
  config: async () => {
    const m = await import('./commands/config.js');
    return [m.ConfigSshCommand, m.ConfigListCommand, m.ConfigDeleteCommand];
  },
  init: async () => [(await import('./commands/init.js')).InitCommand],
};

/** The detached supervisor is for dstack itself; loaded only when called, so help never lists it. */
const HIDDEN: Readonly<Record<string, Loader>> = {
  _supervise: async () => [(await import('./commands/supervise.js')).SuperviseCommand],
};

async function commandsFor(name: string | undefined): Promise<readonly CommandClass[]> {
  const load = (name !== undefined && (COMMANDS[name] ?? HIDDEN[name])) || undefined;
  if (load) return load();
  return (await Promise.all(Object.values(COMMANDS).map((l) => l()))).flat();
}

export async function main(argv: readonly string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const colored = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
  const cli = new Cli({ binaryLabel: 'dstack — run ML workflows in Docker', binaryName: 'dstack', binaryVersion: VERSION, enableColors: colored });
  for (const c of await commandsFor(argv[0])) cli.register(c);
  cli.register(Builtins.HelpCommand);
  cli.register(Builtins.VersionCommand);
  let command;
  try {
    command = cli.process([...argv], Cli.defaultContext);
  } catch (e) {
    // Parse errors: unknown command or option, missing argument.
    const text = cli.error(e, { colored: false }).replace(/^Unknown Syntax Error: /, '').trimEnd();
    process.stderr.write(`error DS0100: ${text}\n  = see \`dstack --help\`\n`);
    return 2;
  }
  try {
    return await cli.run(command, Cli.defaultContext);
  } catch (e) {
    return reportError(e, process.stderr);
  }
}
