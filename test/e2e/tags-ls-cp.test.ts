/**
 * `ls`, `cp` and `tags`, end to end on busybox: the artifacts of a run (two jobs; which job wins on a
 * shared path is unit-tested in artifact-ref.test.ts, since a dep's files are read-only) and of tags taken from a run or from a local folder; sizes, totals, modes kept,
 * paths that climb out refused; a `tag:` dep seeing exactly the tagged files.
 */
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject, removeContainers, runNameOf, type CliResult, type Project, assertOk as ok } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

const WORKFLOWS = `workflows:
  - name: a
    image: ${IMAGE}
    commands:
      - mkdir -p out/sub
      - echo hello > out/x.txt
      - printf '#!/bin/sh\\necho run\\n' > out/sub/run.sh
      - chmod 755 out/sub/run.sh
      - head -c 2500 /dev/zero > out/big.bin
    artifacts:
      - out
  - name: b
    image: ${IMAGE}
    deps: [a]
    commands:
      - echo from-b > b.txt
    artifacts:
      - b.txt
  - name: fails
    image: ${IMAGE}
    commands:
      - echo partial > p.txt
      - exit 3
    artifacts: [p.txt]
  - name: uses-tag
    image: ${IMAGE}
    deps:
      - tag: t1
    commands:
      - cat out/x.txt b.txt
      - ./out/sub/run.sh
      - ls out
`;

let p: Project;
let run = '';

const fails = (r: CliResult, exit: number, stderr: string): void => {
  assertNoCrash(r);
  assert.is(r.stderr, stderr);
  assert.is(r.exitCode, exit, r.stderr);
  assert.is(r.stdout, '');
};
const mode = async (path: string): Promise<string> => ((await stat(path)).mode & 0o777).toString(8);

test.before(withTimeout(60_000, async () => {
  p = await createProject({
    workflows: WORKFLOWS,
    files: { 'data/a.txt': 'alpha\n', 'data/tool.sh': '#!/bin/sh\necho tool\n', 'data/deep/z.txt': 'zz\n' },
  });
  await chmod(join(p.dir, 'data/tool.sh'), 0o755);
}));
test.after(withTimeout(60_000, async () => {
  await p.cleanup();
}));

test(
  'ls RUN: every job\'s files with sizes, jobs and a total',
  withTimeout(60_000, async () => {
    try {
      const r = await p.run(['run', 'b']);
      ok(r, 'run b');
      run = runNameOf(r.stderr);
      const ls = await p.run(['ls', run]);
      ok(ls, 'ls');
      assert.is(
        ls.stdout,
        [
          'PATH            SIZE    JOB',
          'b.txt           7 B     b',
          'out/big.bin     2.5 kB  a',
          'out/sub/run.sh  19 B    a',
          'out/x.txt       6 B     a',
          '4 files, 2.5 kB',
          '',
        ].join('\n'),
      );
      assert.is(ls.stderr, '');

      const sub = await p.run(['ls', run, 'out/sub/']);
      ok(sub, 'ls prefix');
      assert.is(sub.stdout, 'PATH            SIZE  JOB\nout/sub/run.sh  19 B  a\n1 file, 19 B\n');
      const none = await p.run(['ls', run, 'nothing/']);
      ok(none, 'ls empty prefix');
      assert.is(none.stdout, '0 files, 0 B\n');

      const json = await p.json<{ run: string; files: number; size: number; entries: { path: string; size: number; mode: string; job: string }[] }>(['ls', run, 'out', '--json']);
      assert.is(json.run, run);
      assert.is(json.files, 3);
      assert.is(json.size, 2525);
      assert.equal(
        json.entries.map((e) => [e.path, e.size, e.mode, e.job]),
        [
          ['out/big.bin', 2500, '0644', `${run}/a`],
          ['out/sub/run.sh', 19, '0755', `${run}/a`],
          ['out/x.txt', 6, '0644', `${run}/a`],
        ],
      );

      fails(await p.run(['ls', 'no-such-run-1']), 2, "error DS0101: no run named 'no-such-run-1'\n  = list runs with `dstack ps -a`, or name a tag as `:TAG`\n");
      fails(await p.run(['ls', ':nope']), 2, "error DS0015: no tag named 'nope'\n  = list tags with `dstack tags list`\n");
      fails(await p.run(['ls', run, '../x']), 2, "error DS0009: prefix '../x' leaves the artifact tree\n  = artifact paths are relative, e.g. `out/`, or absolute for those saved outside /workflow, e.g. `/opt/venv/`\n");
    } finally {
      await removeContainers(p.home);
    }
  }),
);

test(
  'cp: a file, a folder (new and existing destination), the whole set; modes kept; `..` and unknown paths refused',
  withTimeout(30_000, async () => {
    const dst = join(p.dir, 'dst');
    await mkdir(join(dst, 'existing'), { recursive: true });

    const file = await p.run(['cp', run, 'out/sub/run.sh', 'dst/']);
    ok(file, 'cp file into folder');
    assert.is(file.stderr, 'Copied 1 file (19 B) to dst/\n');
    assert.is(await readFile(join(dst, 'run.sh'), 'utf8'), '#!/bin/sh\necho run\n');
    assert.is(await mode(join(dst, 'run.sh')), '755');

    ok(await p.run(['cp', run, 'out/x.txt', 'dst/renamed.txt']), 'cp file to a name');
    assert.is(await readFile(join(dst, 'renamed.txt'), 'utf8'), 'hello\n');
    assert.is(await mode(join(dst, 'renamed.txt')), '644');

    const folder = await p.run(['cp', run, 'out', 'dst/copy']);
    ok(folder, 'cp folder to a new folder');
    assert.is(folder.stderr, 'Copied 3 files (2.5 kB) to dst/copy\n');
    assert.is(await readFile(join(dst, 'copy/x.txt'), 'utf8'), 'hello\n');
    assert.is(await mode(join(dst, 'copy/sub/run.sh')), '755');
    assert.is((await stat(join(dst, 'copy/big.bin'))).size, 2500);

    ok(await p.run(['cp', run, './out/sub', 'dst/existing']), 'cp folder into an existing folder');
    assert.is(await readFile(join(dst, 'existing/sub/run.sh'), 'utf8'), '#!/bin/sh\necho run\n');
    assert.is(await mode(join(dst, 'existing/sub/run.sh')), '755');

    ok(await p.run(['cp', run, '.', 'dst/all']), 'cp everything');
    assert.is(await readFile(join(dst, 'all/b.txt'), 'utf8'), 'from-b\n');
    assert.is(await readFile(join(dst, 'all/out/x.txt'), 'utf8'), 'hello\n');

    fails(
      await p.run(['cp', run, '../etc/passwd', 'dst/evil']),
      2,
      `error DS0009: SRC '../etc/passwd' leaves the artifact tree\n  = give a path as \`dstack ls ${run}\` shows it, e.g. out/model.pt\n`,
    );
    fails(await p.run(['cp', run, 'out/../../x', 'dst/evil']), 2, `error DS0009: SRC 'out/../../x' leaves the artifact tree\n  = give a path as \`dstack ls ${run}\` shows it, e.g. out/model.pt\n`);
    // An absolute SRC names an artifact saved outside /workflow (/opt/venv); this run has none there.
    fails(await p.run(['cp', run, '/etc/passwd', 'dst/evil']), 2, `error DS0107: '/etc/passwd' is not among the artifacts of run ${run}\n  = list them with \`dstack ls ${run}\`\n`);
    fails(await p.run(['cp', run, '/opt/../etc/passwd', 'dst/evil']), 2, `error DS0009: SRC '/opt/../etc/passwd' leaves the artifact tree\n  = give a path as \`dstack ls ${run}\` shows it, e.g. out/model.pt\n`);
    fails(await p.run(['cp', run, 'out/nope.txt', 'dst/x']), 2, `error DS0107: 'out/nope.txt' is not among the artifacts of run ${run}\n  = list them with \`dstack ls ${run}\`\n`);
    fails(await p.run(['cp', run, 'out', 'dst/renamed.txt']), 2, "error DS0105: cannot copy the folder 'out' onto the file dst/renamed.txt\n  = give a folder (new or existing) as DST\n");
    assert.not.ok(await stat(join(dst, 'evil')).catch(() => undefined), 'nothing written for refused copies');
  }),
);

test(
  'tags add NAME RUN: ls :NAME, ps shows the tag; duplicates, bad names and unfinished or failed runs refused',
  withTimeout(60_000, async () => {
    try {
      const add = await p.run(['tags', 'add', 't1', run]);
      ok(add, 'tags add');
      assert.is(add.stderr, `Tagged 4 files (2.5 kB) of run ${run} as t1\n`);
      const ls = await p.run(['ls', ':t1']);
      ok(ls, 'ls :t1');
      assert.is(
        ls.stdout,
        ['PATH            SIZE', 'b.txt           7 B', 'out/big.bin     2.5 kB', 'out/sub/run.sh  19 B', 'out/x.txt       6 B', '4 files, 2.5 kB', ''].join('\n'),
      );
      const ps = await p.json<{ run: string; tag: string | null }[]>(['ps', '-a', '--json']);
      assert.is(ps.find((r) => r.run === run)?.tag, 't1');

      fails(await p.run(['tags', 'add', 't1', run]), 2, "error DS0106: tag 't1' already exists\n  = pick another name, or delete it first: dstack tags delete t1\n");
      fails(
        await p.run(['tags', 'add', 'bad name', run]),
        2,
        "error DS0108: 'bad name' is not a valid tag name\n  = use letters, digits, `.`, `_` and `-`, starting with a letter or digit (at most 100 characters), e.g. mnist-v1\n",
      );
      fails(await p.run(['tags', 'add', 't9', 'no-such-run-1']), 2, "error DS0101: no run named 'no-such-run-1'\n  = list runs with `dstack ps -a`\n");
      fails(await p.run(['tags', 'add', 't9']), 2, 'error DS0100: name a run to tag, or local paths with -a\n  = dstack tags add t9 wet-mangust-1\n');

      const failed = await p.run(['run', 'fails']);
      assert.is(failed.exitCode, 1, failed.stderr);
      const failedRun = runNameOf(failed.stderr);
      fails(
        await p.run(['tags', 'add', 't9', failedRun]),
        2,
        `error DS0109: run ${failedRun} ended failed; only a run that is done can be tagged\n  = run the workflow again, or tag local files with \`dstack tags add NAME -a PATH\`\n`,
      );
    } finally {
      await removeContainers(p.home);
    }
  }),
);

test(
  'a workflow with `deps: [- tag: t1]` sees exactly the tagged files',
  withTimeout(60_000, async () => {
    try {
      const r = await p.run(['run', 'uses-tag']);
      ok(r, 'run uses-tag');
      assert.is(r.stdout, 'hello\nfrom-b\nrun\nbig.bin\nsub\nx.txt\n');
    } finally {
      await removeContainers(p.home);
    }
  }),
);

test(
  'tags add NAME -a DIR: local files under their relative paths; paths outside the folder or missing refused',
  withTimeout(30_000, async () => {
    const add = await p.run(['tags', 'add', 'raw', '-a', './data']);
    ok(add, 'tags add -a');
    assert.is(add.stderr, 'Tagged 3 files (29 B) from ./data as raw\n');
    const ls = await p.run(['ls', ':raw']);
    ok(ls, 'ls :raw');
    assert.is(ls.stdout, ['PATH             SIZE', 'data/a.txt       6 B', 'data/deep/z.txt  3 B', 'data/tool.sh     20 B', '3 files, 29 B', ''].join('\n'));

    // From a subfolder, paths are relative to it.
    const sub = await p.run(['tags', 'add', 'deep', '-a', 'deep', '-a', 'a.txt'], { cwd: join(p.dir, 'data') });
    ok(sub, 'tags add -a from a subfolder');
    assert.is((await p.run(['ls', ':deep'])).stdout, 'PATH        SIZE\na.txt       6 B\ndeep/z.txt  3 B\n2 files, 9 B\n');

    ok(await p.run(['cp', ':raw', 'data/tool.sh', 'tool-copy.sh']), 'cp from a folder tag');
    assert.is(await mode(join(p.dir, 'tool-copy.sh')), '755');
    assert.is(await readFile(join(p.dir, 'tool-copy.sh'), 'utf8'), '#!/bin/sh\necho tool\n');

    fails(
      await p.run(['tags', 'add', 'out1', '-a', '../']),
      2,
      "error DS0009: '../' is outside the current folder\n  = run `dstack tags add` from a folder that contains the paths, and give them relative to it\n",
    );
    fails(
      await p.run(['tags', 'add', 'out2', '-a', 'data/../../x']),
      2,
      "error DS0009: 'data/../../x' is outside the current folder\n  = run `dstack tags add` from a folder that contains the paths, and give them relative to it\n",
    );
    fails(await p.run(['tags', 'add', 'out3', '-a', 'missing']), 2, `error DS0107: no such file or folder: missing\n  = paths are relative to ${p.dir}\n`);
    fails(await p.run(['tags', 'add', 'out4', run, '-a', 'data']), 2, 'error DS0100: give either RUN or -a paths, not both\n  = dstack tags add out4 RUN\n');
    const tags = await p.json<{ name: string }[]>(['tags', 'list', '--json']);
    assert.equal(
      tags.map((t) => t.name),
      ['deep', 'raw', 't1'],
    );
  }),
);

test(
  'tags list, tags delete (asks unless -y; clears the run\'s TAG)',
  withTimeout(30_000, async () => {
    const list = await p.run(['tags', 'list']);
    ok(list, 'tags list');
    const lines = list.stdout.split('\n');
    assert.match(lines[0]!, /^NAME +RUN +FILES +SIZE +CREATED$/);
    assert.match(lines[1]!, /^deep +- +2 +9 B +(now|\d+ secs ago)$/);
    assert.match(lines[2]!, /^raw +- +3 +29 B +(now|\d+ secs ago)$/);
    assert.match(lines[3]!, new RegExp(`^t1 +${run} +4 +2\\.5 kB +(now|\\d+ secs ago)$`));
    assert.is(lines.length, 5);
    const json = await p.json<{ name: string; run: string | null; files: number; size: number; createdAt: string }[]>(['tags', 'list', '--json']);
    assert.equal(
      json.map((t) => [t.name, t.run, t.files, t.size]),
      [
        ['deep', null, 2, 9],
        ['raw', null, 3, 29],
        ['t1', run, 4, 2532],
      ],
    );

    fails(await p.run(['tags', 'delete', 't1']), 2, 'error DS0103: Delete tag t1: refused without confirmation\n  = pass -y to confirm: dstack tags delete t1 -y\n');
    const del = await p.run(['tags', 'delete', 't1', '-y']);
    ok(del, 'tags delete');
    assert.is(del.stderr, 'Deleted tag t1\n');
    fails(await p.run(['ls', ':t1']), 2, "error DS0015: no tag named 't1'\n  = list tags with `dstack tags list`\n");
    fails(await p.run(['tags', 'delete', 't1', '-y']), 2, "error DS0015: no tag named 't1'\n  = list tags with `dstack tags list`\n");
    const ps = await p.json<{ run: string; tag: string | null }[]>(['ps', '-a', '--json']);
    assert.is(ps.find((r) => r.run === run)?.tag, null);
    // The run's files are still there.
    assert.is((await p.run(['ls', run])).stdout.split('\n').at(-2), '4 files, 2.5 kB');
  }),
);

test(
  'every new command has --help with examples',
  withTimeout(30_000, async () => {
    for (const cmd of [['ls'], ['cp'], ['tags', 'add'], ['tags', 'list'], ['tags', 'delete']]) {
      const r = await p.run([...cmd, '--help']);
      ok(r, `${cmd.join(' ')} --help`);
      assert.ok(r.stdout.includes('Examples'), `${cmd.join(' ')} --help:\n${r.stdout}`);
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
