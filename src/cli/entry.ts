/**
 * Runs the CLI and exits with its status once output is flushed. `--version` answers before the
 * command-line parser and the commands are even loaded: it is the start-up floor users measure.
 */
import { stdio } from './output.js';
import { VERSION } from './version.js';

export function start(): void {
  const argv = process.argv.slice(2);
  const { stdout, stderr } = stdio();
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
    stdout.write(`${VERSION}\n`);
    return;
  }
  import('./main.js')
    .then(({ main }) => main(argv))
    .then(
      (code) => {
        process.exitCode = code;
      },
      (e: unknown) => {
        stderr.write(`internal error: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exitCode = 70;
      },
    );
}
