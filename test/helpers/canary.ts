/**
 * A canary: a folder outside every dstack folder, with a file and a subfolder, whose listing, file
 * contents and mtimes must be exactly as they were after a hostile job has run. The hostile tests
 * point the links jobs plant at it (and a job learns its path as it would learn any host path, from
 * its environment or /proc/self/mountinfo).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';

export interface Canary {
  readonly dir: string;
  /** Throws when anything under the canary (or the canary itself) was added, removed, written or touched. */
  assertUntouched(): void;
  remove(): void;
}

function describe(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  const st = statSync(join(dir, rel));
  out[rel || '.'] = `${st.isDirectory() ? 'dir' : readFileSync(join(dir, rel), 'utf8')} mtime=${st.mtimeMs} mode=${st.mode.toString(8)}`;
  if (st.isDirectory()) for (const name of readdirSync(join(dir, rel)).sort()) Object.assign(out, describe(dir, rel ? `${rel}/${name}` : name));
  return out;
}

export function makeCanary(): Canary {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'dstack-canary-')));
  mkdirSync(join(dir, 'inner'));
  writeFileSync(join(dir, 'secret.txt'), 'the host secret\n');
  writeFileSync(join(dir, 'inner', 'deep.txt'), 'deep\n');
  const before = describe(dir);
  return {
    dir,
    assertUntouched: () => assert.equal(describe(dir), before, `the canary ${dir} was touched`),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
