/**
 * In-process driver for the hash and store benchmarks (so Node's and tsx's start-up are not timed):
 *   hash HOME ROOT   hashTree over every file under ROOT with HOME's stat cache → {ms, read, files, bytes}
 *   save HOME ROOT   LocalArtifactStore.save of ROOT into HOME's objects → {ms, newBytes, files, bytes, writeBytes}
 * `writeBytes` is what this process caused to be written to disk (/proc/self/io), temp files included.
 * Usage: node --import tsx scripts/bench/tree-driver.ts hash|save HOME ROOT
 */
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { hashTree } from '../../src/artifacts/tree.js';
import { openStore } from '../../src/engine/store/sqlite.js';

const [mode, home, root] = process.argv.slice(2);
if (!home || !root || (mode !== 'hash' && mode !== 'save')) throw new Error('usage: tree-driver.ts hash|save HOME ROOT');

async function list(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await list(dir, p)));
    else out.push(p);
  }
  return out;
}

const written = (): number => Number(/write_bytes:\s*(\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? NaN);

if (mode === 'hash') {
  const files = (await list(root)).sort().map((path) => ({ path }));
  const store = openStore(home);
  const t = process.hrtime.bigint();
  const tree = await hashTree({ root, files, cache: store.fileHashes });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  store.close();
  console.log(JSON.stringify({ ms, read: tree.read, files: tree.manifest.entries.length, bytes: tree.manifest.size, hash: tree.hash }));
} else {
  const store = new LocalArtifactStore({ home });
  const w0 = written();
  const t = process.hrtime.bigint();
  const r = await store.save(root, [{ path: '', mount: false }]);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  const writeBytes = written() - w0;
  console.log(JSON.stringify({ ms, newBytes: r.newBytes, files: r.manifest.entries.filter((e) => e.type === 'file').length, bytes: r.manifest.size, writeBytes }));
}
