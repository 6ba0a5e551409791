/**
 * An id kept in a file of its own, made once: read when the file holds a valid one, else written
 * with O_EXCL so that of two processes making it at once, the first writer's id is everyone's.
 */
import { open, readFile } from 'node:fs/promises';

/**
 * The id in `path`, or a new one from `make` written there; `undefined` when the file exists but
 * holds no valid id (the caller decides whether to replace it or refuse).
 */
export async function idFile(path: string, o: { readonly valid: RegExp; readonly make: () => string; readonly mode: number }): Promise<string | undefined> {
  const existing = (await readFile(path, 'utf8').catch(() => '')).trim();
  if (o.valid.test(existing)) return existing;
  const id = o.make();
  try {
    const fh = await open(path, 'wx', o.mode);
    await fh.writeFile(`${id}\n`);
    await fh.close();
    return id;
  } catch (e) {
    // Another process wrote it first: theirs is the one.
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const theirs = (await readFile(path, 'utf8')).trim();
    return o.valid.test(theirs) ? theirs : undefined;
  }
}
