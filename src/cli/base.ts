/** The commands' base (src/backends/command.ts, where plugins' commands find it too) and usage errors. */
import { DstackError } from '../engine/errors.js';

export { DstackCommand, reportError } from '../backends/command.js';

/** Shorthand for command-line mistakes that clipanion does not catch itself. */
export const usageError = (message: string, hint?: string): DstackError => new DstackError('DS0100', message, hint ? { hint } : {});
