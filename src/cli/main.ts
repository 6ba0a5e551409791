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
import type { DstackContext } from '../backends/command.js';
import type { BackendRegistry } from '../backends/registry.js';
import { reportError } from './base.js';
import { dstackHome } from './home.js';
import { stdio } from './output.js';
import { namePlaceholders, unknownCommand } from './usage-text.js';
import { VERSION } from './version.js';

/** The backend plugins, loaded only by the commands that need them. */
type Backends = () => Promise<BackendRegistry>;
type Loader = (backends: Backends) => Promise<readonly CommandClass<DstackContext>[]>;

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
  push: async () => [(await import('./commands/push.js')).PushCommand],
  pull: async () => [(await import('./commands/pull.js')).PullCommand],
  store: async () => [(await import('./commands/store-verify.js')).StoreVerifyCommand],
  secrets: async () => (await import('./commands/secrets.js')).secretsCommands,
  // `config list|delete` are generic; `config <kind>` comes from each plugin.
  config: async (backends) => {
    const [list, del, registry] = await Promise.all([import('./commands/config-list.js'), import('./commands/config-delete.js'), backends()]);
    return [list.ConfigListCommand, del.ConfigDeleteCommand, ...(await registry.commands())];
  },
  init: async () => [(await import('./commands/init.js')).InitCommand],
};

/** The detached supervisor is for dstack itself; loaded only when called, so help never lists it. */
const HIDDEN: Readonly<Record<string, Loader>> = {
  _supervise: async () => [(await import('./commands/supervise.js')).SuperviseCommand],
};

async function commandsFor(name: string | undefined, backends: Backends): Promise<readonly CommandClass<DstackContext>[]> {
  const load = (name !== undefined && (COMMANDS[name] ?? HIDDEN[name])) || undefined;
  if (load) return load(backends);
  return (await Promise.all(Object.values(COMMANDS).map((l) => l(backends)))).flat();
}

const builtIn: Backends = async () => (await import('../backends/index.js')).registry;

export interface MainOptions {
  /** The backend plugins; default the built-in ones (tests add a fake cloud, as a real one joins). */
  readonly backends?: Backends;
  readonly stdout?: NodeJS.WritableStream;
  readonly stderr?: NodeJS.WritableStream;
}

export async function main(argv: readonly string[], options: MainOptions = {}): Promise<number> {
  const backends = options.backends ?? builtIn;
  // The process's own streams go through the guarded writer: a reader that goes away stops the
  // writing, never the command (a test's injected streams are its own).
  const own = options.stdout && options.stderr ? undefined : stdio();
  const context: DstackContext = {
    ...Cli.defaultContext,
    stdout: (options.stdout ?? own?.stdout) as typeof Cli.defaultContext.stdout,
    stderr: (options.stderr ?? own?.stderr) as typeof Cli.defaultContext.stderr,
    remotes: async () => (await backends()).remotes(dstackHome()),
  };
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
    context.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const colored = Boolean(process.stdout.isTTY) && !options.stdout && !process.env.NO_COLOR;
  const cli = new DstackCli({ binaryLabel: 'dstack — run ML workflows in Docker', binaryName: 'dstack', binaryVersion: VERSION, enableColors: colored });
  for (const c of await commandsFor(argv[0], backends)) cli.register(c);
  cli.register(Builtins.HelpCommand);
  cli.register(Builtins.VersionCommand);
  let command;
  try {
    command = cli.process([...argv], context);
  } catch (e) {
    // Parse errors: unknown command or option, missing argument.
    const paths = cli.definitions().map((d) => d.path.split(' ').slice(1));
    if (e instanceof Error && (e.message.startsWith('Command not found') || unknownSubcommand(argv, paths))) {
      const { message, hint } = unknownCommand(argv, paths);
      context.stderr.write(`error DS0100: ${message}\n  = ${hint}\n`);
      return 2;
    }
    const text = cli.error(e, { colored: false }).replace(/^Unknown Syntax Error: /, '').trimEnd();
    context.stderr.write(`error DS0100: ${text}\n  = see \`dstack --help\`\n`);
    return 2;
  }
  try {
    return await cli.run(command, context);
  } catch (e) {
    return reportError(e, context.stderr);
  }
}

/** `dstack secrets remve`: a group (whose bare name may be a command itself) and a word none of its commands has. */
function unknownSubcommand(argv: readonly string[], paths: readonly (readonly string[])[]): boolean {
  const [group, word] = argv;
  const subs = paths.filter((p) => p.length > 1 && p[0] === group).map((p) => p[1]);
  return subs.length > 0 && word !== undefined && !word.startsWith('-') && !subs.includes(word);
}

/** Usage text with named option values (`--since DURATION`, not clipanion's `--since #0`). */
class DstackCli extends Cli<DstackContext> {
  override usage(...args: Parameters<Cli<DstackContext>['usage']>): string {
    return namePlaceholders(super.usage(...args));
  }

  override error(...args: Parameters<Cli<DstackContext>['error']>): string {
    return namePlaceholders(super.error(...args));
  }
}
