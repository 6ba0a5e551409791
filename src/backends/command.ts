/**
 * The base of every dstack command — the CLI's own (src/cli/commands) and the ones a backend plugin
 * brings (`dstack config <kind>`). It lives here, below the CLI, so that a plugin's commands can
 * derive from it without a backend importing the CLI (as yarn's plugins derive from
 * @yarnpkg/cli's BaseCommand): runs `run()`, renders a DstackError (code, place, hint) to stderr
 * and returns its exit code; anything unexpected is an internal error (stack only with
 * DSTACK_DEBUG=1).
 */
import { Command, type BaseContext } from 'clipanion';
import { diskError } from '../engine/disk-errors.js';
import { formatError, isDstackError } from '../engine/errors.js';
import { VERSION } from '../engine/version.js';
import type { Remotes } from './remotes.js';

/** What every command gets besides stdio: the remotes, read through every plugin's schema (loaded on demand). */
export interface DstackContext extends BaseContext {
  readonly remotes: () => Promise<Remotes>;
}

export abstract class DstackCommand extends Command<DstackContext> {
  abstract run(): Promise<number | void>;

  async execute(): Promise<number> {
    try {
      return (await this.run()) ?? 0;
    } catch (e) {
      return reportError(e, this.context.stderr);
    }
  }
}

export function reportError(error: unknown, stderr: NodeJS.WritableStream): number {
  // A full disk or a read-only one, wherever it surfaced, is the machine's state, not a bug.
  const e = diskError(error) ?? error;
  if (isDstackError(e)) {
    stderr.write(`${formatError(e)}\n`);
    if (process.env.DSTACK_DEBUG === '1' && e.stack) stderr.write(`${e.stack}\n`);
    return e.exitCode;
  }
  const message = e instanceof Error ? e.message : String(e);
  stderr.write(`internal error: ${message}\nthis is a bug in dstack ${VERSION}; please report it with the command you ran (set DSTACK_DEBUG=1 for details)\n`);
  if (process.env.DSTACK_DEBUG === '1' && e instanceof Error && e.stack) stderr.write(`${e.stack}\n`);
  return 70;
}
