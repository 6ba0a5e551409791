import { homedir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';

/** The dstack home: `DSTACK_HOME`, else `~/.dstack`. */
export const dstackHome = (env: NodeJS.ProcessEnv = process.env): string =>
  env.DSTACK_HOME ? resolve(env.DSTACK_HOME) : join(homedir(), '.dstack');

/** Who submits runs; shown in the OWNER column. */
export function owner(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DSTACK_OWNER) return env.DSTACK_OWNER;
  try {
    return userInfo().username;
  } catch {
    return env.USER ?? 'unknown';
  }
}
