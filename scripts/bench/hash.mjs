// Hashing and storing 1 GiB in 10,000 files (random bytes, made once under the bench folder).
//
// hash: src/artifacts/tree.ts's hashTree, in process (tree-driver.ts), against sha256sum of the same
// files — `find … -print0 | xargs -0 -P2 sha256sum` (one per core here) and a single sha256sum —
// each round interleaved:
//   - cold: the page cache dropped before each (`sync; echo 3 > /proc/sys/vm/drop_caches`, as root;
//     when that is not allowed the figure is page-cache-warm and says so), and for hashTree an empty
//     stat cache (a fresh dstack home);
//   - hot: the files in the page cache, still an empty stat cache (CPU-bound: hashing speed itself);
//   - warm: the stat cache filled by the cold run — an unchanged tree is stat'ed, not read.
// store: LocalArtifactStore.save of the whole tree into a fresh home, twice; the second must write
// 0 new bytes (newBytes), and its time and the bytes it really wrote to disk are reported.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, dropPageCache, median, root, save, time } from './lib.mjs';

const FILES = 10_000;
const TOTAL = 1 << 30;
const dataDir = join(cacheDir, 'files-1g');
const marker = join(cacheDir, 'files-1g.made');
const MB = 1e6;

/** 100 folders of 100 files, 1 GiB in all from /dev/urandom (sizes differ by at most a byte). */
export function makeFiles(log = console.error) {
  if (existsSync(marker)) return;
  log('hash: writing 1 GiB in 10,000 files from /dev/urandom (once)…');
  rmSync(dataDir, { recursive: true, force: true });
  const rnd = openSync('/dev/urandom', 'r');
  const base = Math.floor(TOTAL / FILES);
  const extra = TOTAL - base * FILES;
  const buf = Buffer.alloc(base + 1);
  for (let i = 0; i < FILES; i++) {
    const dir = join(dataDir, `d${String(Math.floor(i / 100)).padStart(2, '0')}`);
    if (i % 100 === 0) mkdirSync(dir, { recursive: true });
    const size = base + (i < extra ? 1 : 0);
    for (let off = 0; off < size; ) off += readSync(rnd, buf, off, size - off);
    writeFileSync(join(dir, `f${String(i).padStart(5, '0')}.bin`), buf.subarray(0, size));
  }
  closeSync(rnd);
  writeFileSync(marker, `${new Date().toISOString()}\n`);
}

function driver(mode, home) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/bench/tree-driver.ts'), mode, home, dataDir], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tree-driver ${mode} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const sha256sum = (parallel) => time('sh', ['-c', `find . -type f -print0 | xargs -0 ${parallel ? '-P2 -n 500' : ''} sha256sum > /dev/null`], { cwd: dataDir });

export async function runHash({ rounds = 3, log = console.error } = {}) {
  makeFiles(log);
  const canDrop = dropPageCache();
  if (!canDrop) log('hash: cannot drop the page cache (not root): "cold" figures are page-cache-warm');
  const homes = [];
  const newHome = () => {
    const h = mkdtempSync(join(cacheDir, 'hash-home-'));
    homes.push(h);
    return h;
  };
  const s = { treeCold: [], treeHot: [], treeWarm: [], sumP2Cold: [], sumP2Hot: [], sumCold: [], sumHot: [] };
  let reads = {};
  try {
    for (let i = 0; i < rounds; i++) {
      const home = newHome();
      dropPageCache();
      const cold = driver('hash', home);
      s.treeCold.push(cold.ms);
      const warm = driver('hash', home); // same home: the stat cache the cold run filled
      s.treeWarm.push(warm.ms);
      const hot = driver('hash', newHome()); // page cache full, stat cache empty
      s.treeHot.push(hot.ms);
      reads = { cold: cold.read, warm: warm.read, hot: hot.read, files: cold.files, bytes: cold.bytes };
      dropPageCache();
      s.sumP2Cold.push(sha256sum(true));
      s.sumP2Hot.push(sha256sum(true));
      dropPageCache();
      s.sumCold.push(sha256sum(false));
      s.sumHot.push(sha256sum(false));
    }
  } finally {
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  }
  const m = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, median(v)]));
  const mbs = (t) => TOTAL / MB / (t / 1000);
  const file = save('hash', {
    commands: {
      tree: `node --import tsx scripts/bench/tree-driver.ts hash HOME ${dataDir}   (hashTree, timed in process)`,
      sumP2: `cd ${dataDir} && find . -type f -print0 | xargs -0 -P2 -n 500 sha256sum`,
      sum: `cd ${dataDir} && find . -type f -print0 | xargs -0 sha256sum`,
      drop: 'sync; echo 3 > /proc/sys/vm/drop_caches',
    },
    pageCacheDropped: canDrop,
    files: FILES,
    bytes: TOTAL,
    rounds,
    reads,
    medianMs: m,
    mbPerS: Object.fromEntries(Object.entries(m).map(([k, v]) => [k, mbs(v)])),
    ratios: {
      coldVsSumP2: m.treeCold / m.sumP2Cold,
      coldVsSum: m.treeCold / m.sumCold,
      hotVsSumP2: m.treeHot / m.sumP2Hot,
      hotVsSum: m.treeHot / m.sumHot,
      warmVsSumP2Hot: m.treeWarm / m.sumP2Hot,
    },
    samplesMs: s,
  });
  const f = (t) => `${(t / 1000).toFixed(2)} s ${mbs(t).toFixed(0)} MB/s`;
  const cold = canDrop ? 'cold' : 'cold*';
  return {
    file,
    rows: [
      { name: `hash: 1 GiB/10k files, ${cold}`, value: f(m.treeCold), baseline: `sha256sum -P2 ${f(m.sumP2Cold)}`, ratio: m.treeCold / m.sumP2Cold, target: 'disk speed (~1x)', ok: m.treeCold / m.sumP2Cold <= 1.25 },
      { name: '', value: '', baseline: `sha256sum ×1 ${f(m.sumCold)}`, ratio: m.treeCold / m.sumCold, target: '', ok: undefined },
      { name: 'hash: hot page cache, no stat cache', value: f(m.treeHot), baseline: `sha256sum -P2 ${f(m.sumP2Hot)}`, ratio: m.treeHot / m.sumP2Hot, target: '~1x', ok: m.treeHot / m.sumP2Hot <= 1.25 },
      { name: '', value: '', baseline: `sha256sum ×1 ${f(m.sumHot)}`, ratio: m.treeHot / m.sumHot, target: '', ok: undefined },
      { name: `hash: warm (stat cache, ${reads.warm} read)`, value: f(m.treeWarm), baseline: `sha256sum -P2 ${f(m.sumP2Hot)}`, ratio: m.treeWarm / m.sumP2Hot, target: '0 files read', ok: reads.warm === 0 },
    ],
  };
}

export async function runStore({ log = console.error } = {}) {
  makeFiles(log);
  const home = mkdtempSync(join(cacheDir, 'store-home-'));
  try {
    const first = driver('save', home);
    const second = driver('save', home);
    const file = save('store', {
      command: `node --import tsx scripts/bench/tree-driver.ts save HOME ${dataDir}   (twice, same HOME)`,
      first,
      second,
    });
    const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;
    return {
      file,
      rows: [
        { name: 'store: save 1 GiB, first time', value: `${(first.ms / 1000).toFixed(2)} s`, baseline: `new ${mib(first.newBytes)}`, ratio: undefined, target: '', ok: undefined },
        {
          name: 'store: save again (same content)',
          value: `${(second.ms / 1000).toFixed(2)} s`,
          baseline: `new ${second.newBytes} B, disk ${mib(second.writeBytes)}`,
          ratio: second.ms / first.ms,
          target: '0 new bytes',
          ok: second.newBytes === 0,
        },
      ],
    };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}
