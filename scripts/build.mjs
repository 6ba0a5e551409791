#!/usr/bin/env node
// Bundles the CLI with esbuild into dist/ (ES modules with code splitting, so a command loads only
// what it uses: `dstack --version` never loads dockerode or SQLite). Native addons stay external.
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const { version } = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));
rmSync(`${root}dist`, { recursive: true, force: true });
await build({
  entryPoints: { dstack: `${root}src/cli/entry.ts` },
  outdir: `${root}dist`,
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
