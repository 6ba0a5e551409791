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
  const { mkdir, open, readFile } = await import('node:fs/promises');
  const { randomBytes } = await import('node:crypto');
  const path = join(home, 'id');
  const ok = (s: string): boolean => /^[0-9a-f]{16,64}$/.test(s);
  const existing = (await readFile(path, 'utf8').catch(() => '')).trim();
  if (ok(existing)) return existing;
  await mkdir(home, { recursive: true, mode: 0o700 });
  const id = randomBytes(12).toString('hex');
  try {
    const fh = await open(path, 'wx', 0o600);
    await fh.writeFile(`${id}\n`);
    await fh.close();
    return id;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const theirs = (await readFile(path, 'utf8')).trim();
    if (ok(theirs)) return theirs;
    // A damaged id file: replaced, since nothing else can be done with it.
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path, `${id}\n`, { mode: 0o600 });
    return id;
  }
}
