#!/usr/bin/env node
// Runs the test suites with uvu (TypeScript through tsx), one process per file so a crash or a
// leaked handle in one file cannot hide another's result, and prints the closing line
// "N passed, N failed". Usage: node scripts/test.mjs [unit|integration|e2e ...] [filter]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const suites = ['unit', 'integration', 'e2e'];
const args = process.argv.slice(2);
const chosen = args.filter((a) => suites.includes(a));
const filter = args.find((a) => !suites.includes(a));

function files(dir) {
  let out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(files(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
for (const suite of chosen.length ? chosen : suites) {
  for (const file of files(join(root, 'test', suite))) {
    const rel = relative(root, file);
    if (filter && !rel.includes(filter)) continue;
    const started = Date.now();
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, FORCE_COLOR: '0' },
      maxBuffer: 64 * 1024 * 1024,
    });
    const out = `${r.stdout}${r.stderr}`;
    const num = (re) => Number((out.match(re) ?? [])[1] ?? 0);
    const total = num(/Total:\s+(\d+)/);
    const ok = num(/Passed:\s+(\d+)/);
    const skip = num(/Skipped:\s+(\d+)/);
    const bad = r.status !== 0 || total === 0 || ok + skip !== total;
    passed += ok;
    skipped += skip;
    const nFailed = bad ? Math.max(1, total - ok - skip) : 0;
    failed += nFailed;
    console.log(`${bad ? 'FAIL' : 'ok  '} ${rel} (${ok}/${total}, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
    if (bad) {
      failures.push(rel);
      console.log(out.trim().split('\n').map((l) => `    ${l}`).join('\n'));
    }
  }
}
if (failures.length) console.log(`\nfailed files:\n  ${failures.join('\n  ')}`);
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
// Nothing may silently skip in CI.
process.exit(failed > 0 || (process.env.CI && skipped > 0) ? 1 : 0);
