/**
 * Secrets live in `secrets.json` in the dstack home (mode 0600), outside the run records; they are
 * read only when a job starts and reach it as environment variables.
 */
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DstackError } from '../engine/errors.js';

const file = (home: string): string => join(home, 'secrets.json');

export function readSecrets(home: string): Record<string, string> {
  const path = file(home);
  if (!existsSync(path)) return {};
  try {
    const data: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (data && typeof data === 'object' && !Array.isArray(data)) {
      return Object.fromEntries(Object.entries(data).filter((e): e is [string, string] => typeof e[1] === 'string'));
    }
  } catch {
    // fall through to the error below
  }
  throw new DstackError('DS0300', `the secrets file ${path} is not valid JSON`, { hint: 'fix or remove it, then add the secrets again with `dstack secrets add`' });
}

export function writeSecrets(home: string, secrets: Readonly<Record<string, string>>): void {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const path = file(home);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}
