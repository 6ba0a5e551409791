#!/usr/bin/env node
// Runs the test suites with uvu (TypeScript through tsx), one process per file so a crash or a
// leaked handle in one file cannot hide another's result, and prints the closing line
// "N passed, N failed". Usage: node scripts/test.mjs [unit|integration|e2e ...] [filter]
//
// Each file gets DSTACK_TEST_FILE_TIMEOUT seconds (default 600): one that hangs is killed, with its
// process group, and counted as failed, so one hang never blocks the rest. A filter that matches
// no file is a failure too: a typo must not pass as "0 failed".
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const suites = ['unit', 'integration', 'e2e'];
const args = process.argv.slice(2);
const chosen = args.filter((a) => suites.includes(a));
const filter = args.find((a) => !suites.includes(a));
const fileTimeoutMs = Number(process.env.DSTACK_TEST_FILE_TIMEOUT ?? 600) * 1000;

function files(dir) {
  let out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(files(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** Runs one file in a process group of its own; on timeout the whole group is killed. */
function runFile(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: '0' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, fileTimeoutMs);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, out, timedOut });
    });
  });
}

const selected = [];
for (const suite of chosen.length ? chosen : suites) {
  for (const file of files(join(root, 'test', suite))) {
    const rel = relative(root, file);
    if (!filter || rel.includes(filter)) selected.push({ file, rel });
  }
}
if (selected.length === 0) {
  console.log(`no test file matches ${filter ? `'${filter}'` : 'the suites'} in ${(chosen.length ? chosen : suites).join(', ')}`);
  process.exit(1);
}

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
for (const { file, rel } of selected) {
  const started = Date.now();
  const r = await runFile(file);
  const num = (re) => Number((r.out.match(re) ?? [])[1] ?? 0);
  const total = num(/Total:\s+(\d+)/);
  const ok = num(/Passed:\s+(\d+)/);
  const skip = num(/Skipped:\s+(\d+)/);
  // uvu counts a skipped test in Skipped, not in Total.
  const bad = r.timedOut || r.status !== 0 || total + skip === 0 || ok !== total;
  passed += ok;
  skipped += skip;
  failed += bad ? Math.max(1, total - ok) : 0;
  const note = r.timedOut ? `, killed after ${fileTimeoutMs / 1000} s` : '';
  console.log(`${bad ? 'FAIL' : 'ok  '} ${rel} (${ok}/${total}, ${((Date.now() - started) / 1000).toFixed(1)} s${note})`);
  if (bad) {
    failures.push(rel);
    console.log(r.out.trim().split('\n').map((l) => `    ${l}`).join('\n'));
  }
}
if (failures.length) console.log(`\nfailed files:\n  ${failures.join('\n  ')}`);
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
// Nothing may silently skip in CI.
process.exit(failed > 0 || (process.env.CI && skipped > 0) ? 1 : 0);
