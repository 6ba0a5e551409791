/**
 * The base of every command: runs `run()`, renders a DstackError (code, place, hint) to stderr and
 * returns its exit code; anything unexpected is an internal error (stack only with DSTACK_DEBUG=1).
 */
import { Command } from 'clipanion';
import { DstackError, formatError, isDstackError } from '../engine/errors.js';
import { VERSION } from './version.js';

export abstract class DstackCommand extends Command {
  abstract run(): Promise<number | void>;

  async execute(): Promise<number> {
    try {
      return (await this.run()) ?? 0;
    } catch (e) {
      return reportError(e, this.context.stderr);
    }
  }
}

export function reportError(e: unknown, stderr: NodeJS.WritableStream): number {
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

/** Shorthand for command-line mistakes that clipanion does not catch itself. */
export const usageError = (message: string, hint?: string): DstackError => new DstackError('DS0100', message, hint ? { hint } : {});
