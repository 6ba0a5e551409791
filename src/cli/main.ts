/**
 * The entry point: builds the clipanion CLI from one command per file, routes every error to
 * stderr with a code and exit status (clipanion writes errors to stdout by default), and maps
 * usage mistakes to exit 2.
 */
import { Builtins, Cli } from 'clipanion';
import { InitCommand } from './commands/init.js';
import { LogsCommand } from './commands/logs.js';
import { PsCommand } from './commands/ps.js';
import { RmCommand } from './commands/rm.js';
import { RunCommand } from './commands/run.js';
import { StopCommand } from './commands/stop.js';
import { SuperviseCommand } from './commands/supervise.js';
import { reportError } from './base.js';
import { VERSION } from './version.js';

export async function main(argv: readonly string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const colored = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
  const cli = new Cli({ binaryLabel: 'dstack — run ML workflows in Docker', binaryName: 'dstack', binaryVersion: VERSION, enableColors: colored });
  for (const c of [RunCommand, PsCommand, LogsCommand, StopCommand, RmCommand, InitCommand, Builtins.HelpCommand, Builtins.VersionCommand]) {
    cli.register(c);
  }
  // The detached supervisor is for dstack itself; registered only when called, so help never lists it.
  if (argv[0] === '_supervise') cli.register(SuperviseCommand);
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
