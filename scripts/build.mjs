#!/usr/bin/env node
// Bundles the CLI with esbuild (ES modules with code splitting, so a command loads only what it
// uses: `dstack --version` never loads dockerode or SQLite). Native addons stay external.
//
// Each build goes to a folder of its own, `.build/<stamp>/`, and `dist` is a symlink that is
// swapped to it by one rename: a CLI started at any moment (the e2e suite runs while others build)
// finds either the old bundle or the new one, never an empty or half-written folder. A bundle loads
// its chunks lazily from its own folder, so an older build stays for an hour for processes still
// running from it.
import { build } from 'esbuild';
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const builds = join(root, '.build');
const dist = join(root, 'dist');
const KEEP_OLD_MS = 60 * 60 * 1000;
const { version } = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));

const stamp = `${Date.now()}-${process.pid}`;
const outdir = join(builds, stamp);
mkdirSync(outdir, { recursive: true });
try {
  await build({
    entryPoints: { dstack: `${root}src/cli/entry.ts` },
    outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    legalComments: 'none',
    define: { __DSTACK_VERSION__: JSON.stringify(version) },
    // Native addons load from node_modules; cpu-features is ssh2's optional speed-up.
    external: ['better-sqlite3', 'cpu-features', 'ssh2'],
    // CommonJS dependencies bundled into ESM still call require(); give them one.
    banner: { js: "import { createRequire as __dstackCreateRequire } from 'node:module'; const require = __dstackCreateRequire(import.meta.url);" },
    logLevel: 'warning',
  });
} catch (e) {
  rmSync(outdir, { recursive: true, force: true });
  throw e;
}

// A `dist` folder from before builds were swapped in: replaced once.
if (lstatSync(dist, { throwIfNoEntry: false })?.isDirectory()) rmSync(dist, { recursive: true, force: true });
const link = join(root, `.dist-${stamp}`);
symlinkSync(join('.build', stamp), link);
renameSync(link, dist);

for (const name of readdirSync(builds)) {
  if (name === stamp) continue;
  const p = join(builds, name);
  if (Date.now() - statSync(p).mtimeMs > KEEP_OLD_MS) rmSync(p, { recursive: true, force: true });
}
