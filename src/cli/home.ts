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

/**
 * This home's id: a random name written once to `${home}/id`, recorded as the owner of what it
 * pushes to a team bucket (a run's record is rewritten only by the home that owns it).
 */
export async function homeId(home: string): Promise<string> {
  const [{ mkdir, writeFile }, { randomBytes }, { idFile }] = await Promise.all([import('node:fs/promises'), import('node:crypto'), import('../engine/id-file.js')]);
  const path = join(home, 'id');
  const make = (): string => randomBytes(12).toString('hex');
  await mkdir(home, { recursive: true, mode: 0o700 });
  const id = await idFile(path, { valid: /^[0-9a-f]{16,64}$/, make, mode: 0o600 });
  if (id) return id;
  // A damaged id file: replaced, since nothing else can be done with it.
  const fresh = make();
  await writeFile(path, `${fresh}\n`, { mode: 0o600 });
  return fresh;
}
