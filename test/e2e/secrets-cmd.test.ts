/**
 * `dstack secrets add|list|delete`, end to end: values from piped stdin (or the command line), kept in
 * `secrets.json` with mode 0600 whatever the umask, never printed; a job sees an added secret.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject, ensureBuilt, removeContainers, type CliResult, type Project } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const BIN = new URL('../../bin/dstack', import.meta.url).pathname;
const VALUE = 'pa55-w0rd value';

/** `dstack ARGS` with `input` on stdin (the project helper gives the CLI no stdin), under umask 000. */
async function withInput(p: Project, args: readonly string[], input: string): Promise<CliResult> {
  ensureBuilt();
  // A permissive umask must not make the secrets file readable by others.
  const r = await execa('sh', ['-c', 'umask 000 && exec "$0" "$@"', process.execPath, BIN, ...args], { cwd: p.dir, env: p.env, extendEnv: false, input, reject: false, timeout: 30_000, stripFinalNewline: false });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const modeOf = (path: string): string => (statSync(path).mode & 0o777).toString(8);

let p: Project;
test.before(withTimeout(60_000, async () => {
  p = await createProject({
    workflows: `workflows:\n  - name: show\n    image: ${IMAGE}\n    env:\n      - TOKEN=\${{ secrets.API_TOKEN }}\n    commands:\n      - echo "len=\${#TOKEN}"\n`,
  });
}));
test.after(withTimeout(60_000, async () => {
  await p.cleanup();
}));

test(
  'add from piped stdin (one trailing newline dropped), list names only, delete; the file stays 0600',
  withTimeout(30_000, async () => {
    const add = await withInput(p, ['secrets', 'add', 'API_TOKEN'], `${VALUE}\n`);
    assert.is(add.exitCode, 0, add.stderr);
    assertNoCrash(add);
    assert.is(add.stdout, '');
    assert.is(add.stderr, 'Added secret API_TOKEN\n');
    const file = join(p.home, 'secrets.json');
    assert.is(modeOf(file), '600');
    assert.equal(JSON.parse(readFileSync(file, 'utf8')), { API_TOKEN: VALUE });

    // A value with inner newlines keeps them; only the last one goes.
    const multi = await withInput(p, ['secrets', 'add', 'PEM'], 'line1\nline2\n\n');
    assert.is(multi.exitCode, 0, multi.stderr);
    assert.is(multi.stderr, 'Added secret PEM\n');
    assert.is((JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>).PEM, 'line1\nline2\n');

    const replace = await withInput(p, ['secrets', 'add', 'PEM', 'on-the-command-line'], '');
    assert.is(replace.exitCode, 0, replace.stderr);
    assert.is(replace.stderr, 'Replaced secret PEM\n');
    assert.is(modeOf(file), '600');

    const list = await p.run(['secrets', 'list']);
    assert.is(list.exitCode, 0, list.stderr);
    assert.is(list.stdout, 'API_TOKEN\nPEM\n');
    assert.equal(await p.json(['secrets', 'list', '--json']), ['API_TOKEN', 'PEM']);
    for (const r of [list, await p.run(['secrets', 'list', '--json']), await p.run(['secrets'])]) {
      assert.not.ok(r.stdout.includes(VALUE) || r.stderr.includes(VALUE) || r.stdout.includes('on-the-command-line'), 'a value was printed');
    }

    const refused = await p.run(['secrets', 'delete', 'PEM']);
    assert.is(refused.exitCode, 2);
    assert.is(refused.stderr, 'error DS0103: Delete secret PEM: refused without confirmation\n  = pass -y to confirm: dstack secrets delete PEM -y\n');
    assert.equal(await p.json(['secrets', 'list', '--json']), ['API_TOKEN', 'PEM'], 'a refused delete deletes nothing');
    const del = await p.run(['secrets', 'delete', 'PEM', '-y']);
    assert.is(del.exitCode, 0, del.stderr);
    assert.is(del.stderr, 'Deleted secret PEM\n');
    assert.is(modeOf(file), '600');
    assert.equal(await p.json(['secrets', 'list', '--json']), ['API_TOKEN']);
  }),
);

test(
  'a job sees the added secret; after delete it fails with DS0016',
  withTimeout(60_000, async () => {
    try {
      const r = await p.run(['run', 'show']);
      assert.is(r.exitCode, 0, r.stderr);
      assert.is(r.stdout, `len=${VALUE.length}\n`);
      const del = await p.run(['secrets', 'delete', 'API_TOKEN', '--yes']);
      assert.is(del.exitCode, 0, del.stderr);
      const after = await p.run(['run', 'show']);
      assert.is(after.exitCode, 2, after.stderr);
      assert.ok(after.stderr.includes("error DS0016: secret 'API_TOKEN' used by env TOKEN of show is not set\n"), after.stderr);
      const list = await p.run(['secrets', 'list']);
      assert.is(list.stdout, '');
      assert.is(list.stderr, 'No secrets yet. Add one with `dstack secrets add NAME`.\n');
    } finally {
      await removeContainers(p.home);
    }
  }),
);

test(
  'bad names, empty values and unknown secrets are refused with codes; --help has examples',
  withTimeout(30_000, async () => {
    const bad = await withInput(p, ['secrets', 'add', '1TOKEN'], 'x\n');
    assert.is(bad.exitCode, 2);
    assert.is(bad.stderr, "error DS0108: '1TOKEN' is not a valid secret name\n  = use letters, digits and `_`, not starting with a digit, e.g. WANDB_API_KEY\n");
    const dash = await withInput(p, ['secrets', 'add', 'MY-TOKEN'], 'x\n');
    assert.is(dash.exitCode, 2);
    assert.ok(dash.stderr.startsWith("error DS0108: 'MY-TOKEN' is not a valid secret name\n"), dash.stderr);
    const empty = await withInput(p, ['secrets', 'add', 'EMPTY'], '\n');
    assert.is(empty.exitCode, 2);
    assert.is(empty.stderr, 'error DS0100: no value given for secret EMPTY\n  = type it at the prompt, or pipe it in: dstack secrets add EMPTY < FILE\n');
    const unknown = await p.run(['secrets', 'delete', 'NOPE', '-y']);
    assert.is(unknown.exitCode, 2);
    assert.is(unknown.stderr, "error DS0016: no secret named 'NOPE'\n  = list them with `dstack secrets list`\n");
    assert.equal(await p.json(['secrets', 'list', '--json']), []);
    for (const cmd of ['add', 'list', 'delete']) {
      const help = await p.run(['secrets', cmd, '--help']);
      assert.is(help.exitCode, 0, help.stderr);
      assert.ok(help.stdout.includes('Examples'), help.stdout);
    }
    assert.ok((await p.run(['secrets', 'add', '--help'])).stdout.includes('shell history'));
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
