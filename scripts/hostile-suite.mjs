#!/usr/bin/env node
// The hostile-job suite of issue 7's Bars, gathered in one place: each class of fault and the test
// files that play it. Every file here also runs in CI with its suite (scripts/test.mjs); this runs
// them alone, with CI=1 so a skipped test fails, refuses `test.skip`/`.only` in them, and fails on a
// listed file that is missing (a class whose tests have not landed is a gap, not a pass).
//
// Usage: node scripts/hostile-suite.mjs [--list]     (--list: print the classes and files, run nothing)
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

export const CLASSES = [
  ['§1 symlinks planted between runs in cache and job folders; link chains in artifacts; cp writing links out', [
    'test/e2e/hostile-links.test.ts',
    'test/unit/safe-fs.test.ts',
    'test/unit/artifact-links.test.ts',
    'test/unit/copy-out.test.ts',
  ]],
  ['§1 the same on an SSH host (cache, artifacts) and objects sent to hosts', [
    'test/e2e/hostile-remote.test.ts',
    'test/unit/host-object-cache.test.ts',
  ]],
  ['§2 damaged and missing objects: verified reads, quarantine, re-run, store verify', [
    'test/e2e/hostile-store.test.ts',
    'test/unit/object-store.test.ts',
  ]],
  ['§3 a 20 MB tmpfs home with a 50 MB artifact (ENOSPC), a read-only home, a damaged database', [
    'test/e2e/disk.test.ts',
  ]],
  ['§4 the Docker engine frozen or killed (socket proxy), leftovers swept by label and folder, two homes', [
    'test/e2e/engine-faults.test.ts',
  ]],
  ['§4 kill -9 of the CLI at seeded random points (3 in CI; 25+ with scripts/kill-trials.ts)', [
    'test/e2e/kill-trials.test.ts',
  ]],
];

if (process.argv.includes('--list')) {
  for (const [what, files] of CLASSES) console.log(`${what}\n${files.map((f) => `  ${f}`).join('\n')}`);
  process.exit(0);
}

let bad = 0;
for (const [what, files] of CLASSES) {
  console.log(`\n${what}`);
  for (const file of files) {
    if (!existsSync(join(root, file))) {
      console.log(`  MISSING ${file}`);
      bad++;
      continue;
    }
    if (/\btest\.(skip|only)\(/.test(readFileSync(join(root, file), 'utf8'))) {
      console.log(`  SKIP/ONLY in ${file}`);
      bad++;
      continue;
    }
    const suite = file.split('/')[1];
    const r = spawnSync(process.execPath, [join(root, 'scripts/test.mjs'), suite, file.slice(`test/${suite}/`.length)], {
      cwd: root,
      env: { ...process.env, CI: '1' },
      encoding: 'utf8',
    });
    const line = r.stdout.split('\n').find((l) => l.includes(file)) ?? r.stdout.trim().split('\n').pop();
    console.log(`  ${line}`);
    if (r.status !== 0) bad++;
  }
}
console.log(bad ? `\n${bad} file(s) missing, skipped or failing` : '\nevery class ran, nothing skipped');
process.exit(bad ? 1 : 0);
