/**
 * `dstack prune`, end to end on busybox: finished, untagged runs older than the age go with the
 * objects only they referred to; tagged runs, folder tags and objects younger than the guard stay, and
 * what stays still materializes.
 */
import { existsSync, readdirSync, utimesSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, createProject, removeContainers, runNameOf, type Project, assertOk as ok } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const WORKFLOWS = `workflows:
  - name: p
    image: ${IMAGE}
    commands:
      - mkdir -p out
      - cat /proc/sys/kernel/random/uuid > out/id.txt
      - head -c 5000 /dev/urandom > out/blob.bin
    artifacts: [out]
`;

interface LsJson {
  entries: { path: string; hash: string }[];
}
interface PruneJson {
  dryRun: boolean;
  runs: string[];
  objects: number;
  tempFiles: number;
  bytes: number;
  keptLive: number;
  keptYoung: number;
  /** Objects of the removed runs that others still use. */
  keptShared: number;
  /** store.db (with its WAL) before and after the space of deleted rows was given back; not in a dry run. */
  storeBytesBefore?: number;
  storeBytesAfter?: number;
}

function objectFiles(home: string): Set<string> {
  const root = join(home, 'objects', 'sha256');
  const out = new Set<string>();
  for (const shard of existsSync(root) ? readdirSync(root) : []) for (const name of readdirSync(join(root, shard))) out.add(name);
  return out;
}

function ageObjects(home: string, ms: number): void {
  const t = (Date.now() - ms) / 1000;
  const root = join(home, 'objects', 'sha256');
  for (const shard of readdirSync(root)) for (const name of readdirSync(join(root, shard))) utimesSync(join(root, shard, name), t, t);
}

let p: Project;
test.before(withTimeout(60_000, async () => {
  p = await createProject({ workflows: WORKFLOWS, files: { 'data/raw.txt': 'raw data\n' } });
}));
test.after(withTimeout(60_000, async () => {
  await p.cleanup();
}));

test(
  'prune keeps tagged runs, folder tags and young objects; removes the rest and says what it freed',
  withTimeout(120_000, async () => {
    try {
      const runs: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await p.run(['run', 'p']);
        ok(r, `run ${i}`);
        runs.push(runNameOf(r.stderr));
      }
      const [kept, gone1, gone2] = runs as [string, string, string];
      ok(await p.run(['tags', 'add', 'keep', kept]), 'tag a run');
      ok(await p.run(['tags', 'add', 'raw', '-a', 'data']), 'tag a folder');
      await mkdir(join(p.home, 'runs', gone1), { recursive: true });
      await writeFile(join(p.home, 'runs', gone1, 'supervisor.log'), 'log of a detached run\n');

      const hashes = async (ref: string): Promise<Set<string>> => new Set((await p.json<LsJson>(['ls', ref, '--json'])).entries.map((e) => e.hash));
      const keptHashes = new Set([...(await hashes(kept)), ...(await hashes(':raw'))]);
      const goneHashes = new Set([...(await hashes(gone1)), ...(await hashes(gone2))].filter((h) => !keptHashes.has(h)));
      assert.is(goneHashes.size, 4, 'each run wrote its own id.txt and blob.bin');
      ok(await p.run(['cp', kept, 'out/blob.bin', 'before.bin']), 'cp before prune');

      // Default age (7d): nothing is old enough yet.
      const young = await p.json<PruneJson>(['prune', '-y', '--json']);
      assert.equal([young.runs, young.objects], [[], 0]);

      // Make every object look two hours old, then add an unreferenced one written "now" and a stale temp file.
      ageObjects(p.home, 2 * 3600 * 1000);
      const fresh = Buffer.from('written by a run that has not recorded it yet\n');
      const freshHash = createHash('sha256').update(fresh).digest('hex');
      await mkdir(join(p.home, 'objects', 'sha256', freshHash.slice(0, 2)), { recursive: true });
      await writeFile(join(p.home, 'objects', 'sha256', freshHash.slice(0, 2), freshHash), fresh, { mode: 0o444 });
      const staleTmp = join(p.home, 'objects', 'tmp', 'crashed-writer');
      await mkdir(join(p.home, 'objects', 'tmp'), { recursive: true });
      await writeFile(staleTmp, 'half an object');
      const old = (Date.now() - 2 * 86_400_000) / 1000;
      utimesSync(staleTmp, old, old);
      const before = objectFiles(p.home);

      const dry = await p.run(['prune', '--older-than', '0s', '--dry-run']);
      ok(dry, 'prune --dry-run');
      const lines = dry.stdout.trimEnd().split('\n');
      assert.match(lines[0]!, /^RUN +WORKFLOW +SUBMITTED +STATUS$/);
      assert.equal(
        lines.slice(1).map((l) => l.split(/ +/)[0]),
        [gone1, gone2],
      );
      assert.match(
        dry.stderr,
        /^Would free \d+(\.\d)? kB: 2 runs, \d+ objects, 1 temp file\nWould keep \d+ objects: \d+ used by the 1 run and 2 tags that remain; 1 unreferenced but written in the last hour \(a run may still be saving it; prune again later to free it\)\n$/,
      );
      const dryJson = await p.json<PruneJson>(['prune', '--older-than', '0s', '--dry-run', '--json']);
      assert.equal(dryJson.runs, [gone1, gone2]);
      assert.equal(objectFiles(p.home), before, 'a dry run deletes nothing');
      assert.ok(existsSync(staleTmp));

      const refused = await p.run(['prune', '--older-than', '0s']);
      assert.is(refused.exitCode, 2, refused.stderr);
      assert.is(refused.stderr, 'error DS0103: Prune runs older than 0s: refused without confirmation\n  = pass -y to confirm: dstack prune --older-than 0s -y\n');

      const pruned = await p.json<PruneJson>(['prune', '--older-than', '0s', '-y', '--json']);
      // What the dry run said, plus the run store's own space given back.
      const { storeBytesBefore, storeBytesAfter, bytes, ...rest } = pruned;
      const { bytes: dryBytes, ...dryRest } = dryJson;
      assert.equal(rest, { ...dryRest, dryRun: false });
      assert.ok(storeBytesBefore !== undefined && storeBytesAfter !== undefined && storeBytesAfter < storeBytesBefore, JSON.stringify(pruned));
      assert.is(bytes, dryBytes + storeBytesBefore - storeBytesAfter);
      assert.equal(pruned.runs, [gone1, gone2]);
      assert.is(pruned.keptYoung, 1);
      assert.is(pruned.keptLive, objectFiles(p.home).size - 1, 'every other object is kept for what remains');
      assert.is(pruned.tempFiles, 1);
      assert.ok(pruned.bytes >= 10_000, `freed ${pruned.bytes} bytes`);

      // Exactly the objects only the removed runs referred to are gone.
      const after = objectFiles(p.home);
      assert.equal([...before].filter((h) => !after.has(h)).sort(), [...goneHashes].sort());
      assert.is(pruned.objects, goneHashes.size);
      assert.ok(after.has(freshHash), 'the young object survived');
      assert.not.ok(existsSync(staleTmp));
      assert.not.ok(existsSync(join(p.home, 'runs', gone1)), "the removed run's folder is gone");

      const ps = await p.json<{ run: string; tag: string | null }[]>(['ps', '-a', '--json']);
      assert.equal(
        ps.map((r) => [r.run, r.tag]),
        [[kept, 'keep']],
      );
      // What was kept still materializes.
      ok(await p.run(['cp', kept, 'out/blob.bin', 'after.bin']), 'cp after prune');
      assert.ok((await readFile(join(p.dir, 'after.bin'))).equals(await readFile(join(p.dir, 'before.bin'))));
      ok(await p.run(['cp', ':raw', 'data', 'raw-copy']), 'cp of the folder tag after prune');
      assert.is(await readFile(join(p.dir, 'raw-copy', 'raw.txt'), 'utf8'), 'raw data\n');
      ok(await p.run(['cp', ':keep', '.', 'keep-copy']), 'cp of the run tag after prune');

      const again = await p.run(['prune', '--older-than', '0s', '-y']);
      ok(again, 'prune again');
      assert.is(again.stdout, '');
      assert.is(
        again.stderr,
        `Freed 0 B: 0 runs, 0 objects\nKept ${after.size} objects: ${after.size - 1} used by the 1 run and 2 tags that remain; 1 unreferenced but written in the last hour (a run may still be saving it; prune again later to free it)\n`,
      );
    } finally {
      await removeContainers(p.home);
    }
  }),
);

test(
  'after the tag is deleted, the run it was taken from goes too; a bad age is DS0102',
  withTimeout(30_000, async () => {
    ok(await p.run(['tags', 'delete', 'keep', '-y']), 'tags delete');
    const pruned = await p.json<PruneJson>(['prune', '--older-than', '0s', '-y', '--json']);
    assert.is(pruned.runs.length, 1);
    assert.ok(pruned.objects >= 2, `objects: ${pruned.objects}`);
    assert.equal(await p.json(['ps', '-a', '--json']), []);
    // The folder tag's files are still there.
    ok(await p.run(['cp', ':raw', 'data/raw.txt', 'raw-again.txt']), 'cp of the folder tag');

    const bad = await p.run(['prune', '--older-than', 'soon', '-y']);
    assert.is(bad.exitCode, 2);
    assert.is(bad.stderr, "error DS0102: --older-than expects a duration like 12h, 7d or 0s, got 'soon'\n");
    const help = await p.run(['prune', '--help']);
    ok(help, 'prune --help');
    assert.ok(help.stdout.includes('Examples'));
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
