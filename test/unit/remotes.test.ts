/**
 * Remotes (src/backends/remotes.ts through the built-in plugins): host specs, the config file, each
 * remote checked by its plugin's schema, finding a remote; and shell quoting for SSH commands.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { registry } from '../../src/backends/index.js';
import { formatHostSpec, jobsPerHostOf, parseHostSpec, type SshRemote } from '../../src/backends/ssh/remote.js';
import { boundToChannel, shellJoin, shellQuote } from '../../src/backends/ssh-host/shell.js';
import { DstackError, formatError } from '../../src/engine/errors.js';
import { withTimeout } from '../helpers/timeout.js';

const readConfig = (home: string) => registry.remotes(home).read();
const writeConfig = (home: string, cfg: Parameters<ReturnType<typeof registry.remotes>['write']>[0]) => registry.remotes(home).write(cfg);
const findRemote = (home: string, name?: string) => registry.remotes(home).find(name);

const fails = async (p: Promise<unknown> | (() => unknown)): Promise<DstackError> => {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof DstackError) return e;
    throw e;
  }
  throw new Error('expected a DstackError');
};

test('parseHostSpec: users, hosts, ports, IPv6; formatHostSpec round-trips', () => {
  assert.equal(parseHostSpec('ubuntu@10.0.0.5'), { user: 'ubuntu', host: '10.0.0.5', port: 22 });
  assert.equal(parseHostSpec('me@gpu.example.com:2222'), { user: 'me', host: 'gpu.example.com', port: 2222 });
  assert.equal(parseHostSpec('me@[::1]:2222'), { user: 'me', host: '::1', port: 2222 });
  assert.equal(parseHostSpec('me@[fe80::1]'), { user: 'me', host: 'fe80::1', port: 22 });
  assert.equal(parseHostSpec('me@fe80::1'), { user: 'me', host: 'fe80::1', port: 22 });
  assert.equal(parseHostSpec('first.last@host'), { user: 'first.last', host: 'host', port: 22 });
  for (const s of ['ubuntu@10.0.0.5', 'me@gpu.example.com:2222', 'me@[::1]:2222', 'me@fe80::1']) assert.is(formatHostSpec(parseHostSpec(s)), s);
  assert.is(formatHostSpec({ user: 'a', host: 'h', port: 65535 }), 'a@h:65535');
});

test('parseHostSpec: every mistake is DS0210, exit 2', withTimeout(5000, async () => {
  const cases: [string, string][] = [
    ['root@', "invalid --host 'root@': no host after @"],
    ['root@:22', "invalid --host 'root@:22': no host after @"],
    ['host', "invalid --host 'host': no user"],
    ['@host', "invalid --host '@host': no user before @"],
    ['ro ot@host', "invalid --host 'ro ot@host': 'ro ot' is not a user name"],
    ['root@h:65536', "invalid --host 'root@h:65536': port 65536 is out of range (1-65535)"],
    ['root@h:', "invalid --host 'root@h:': port '' is not a number"],
    ['root@h:-1', "invalid --host 'root@h:-1': port '-1' is not a number"],
    ['root@h_x', "invalid --host 'root@h_x': 'h_x' is not a host name or address"],
    ['root@[::1]:99999', "invalid --host 'root@[::1]:99999': port 99999 is out of range (1-65535)"],
  ];
  for (const [spec, message] of cases) {
    const e = await fails(() => parseHostSpec(spec));
    assert.is(e.message, message, spec);
    assert.is(e.code, 'DS0210');
    assert.is(e.exitCode, 2);
  }
}));

test(
  'config file: absent is empty, written 0600 atomically, unknown keys kept, malformed is DS0210',
  withTimeout(5000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-cfg-'));
    try {
      assert.equal(await readConfig(home), { remotes: [] });
      const lab = { name: 'lab', kind: 'ssh' as const, hosts: [{ user: 'a', host: 'h', port: 22 }], jobsPerHost: 2 };
      await writeConfig(home, { default: 'lab', remotes: [lab], other: { x: 1 } });
      assert.is(statSync(join(home, 'config.json')).mode & 0o777, 0o600);
      assert.equal(await readConfig(home), { other: { x: 1 }, default: 'lab', remotes: [lab] });
      assert.equal(JSON.parse(readFileSync(join(home, 'config.json'), 'utf8')), { other: { x: 1 }, default: 'lab', remotes: [lab] });
      assert.equal(execFileSync('ls', ['-A', home], { encoding: 'utf8' }), 'config.json\n', 'no temporary file is left');

      // jobsPerHost may be left out of a hand-written file: one job per host.
      const bare = { name: 'x', kind: 'ssh', hosts: [{ user: 'u', host: 'h', port: 2 }] };
      writeFileSync(join(home, 'config.json'), JSON.stringify({ remotes: [bare] }));
      const read = (await readConfig(home)).remotes[0] as SshRemote;
      assert.equal(read, bare);
      assert.is(jobsPerHostOf(read), 1);
      assert.equal(registry.remotes(home).columnsOf(read), { HOSTS: 'u@h:2', 'JOBS/HOST': '1', IDENTITY: '(agent or ~/.ssh)' });

      // Each remote is checked by its plugin's schema, naming the field.
      const invalid = `${join(home, 'config.json')} is not a valid dstack configuration: remotes[0] (x)`;
      const cases: [unknown, string][] = [
        [{ ...bare, hosts: [] }, 'hosts: expected to have a length of at least 1 elements (got 0)'],
        [{ ...bare, hosts: [{ user: 'u', host: 'h', port: 0 }] }, 'hosts[0].port: expected to be in the [1; 65535] range (got 0)'],
        [{ ...bare, identiy: '/k' }, 'identiy: extraneous property (got "/k")'],
        [{ ...bare, jobsPerHost: 0 }, 'jobsPerHost: expected to be at least 1 (got 0)'],
        [{ name: 'x', kind: 'k8s', hosts: [] }, 'has an unknown kind "k8s" (this dstack knows ssh, aws, folder, s3)'],
      ];
      for (const [remote, why] of cases) {
        writeFileSync(join(home, 'config.json'), JSON.stringify({ remotes: [remote] }));
        const e = await fails(readConfig(home));
        assert.is(e.message, `${invalid} ${why}`);
        assert.is(e.code, 'DS0210');
      }
      writeFileSync(join(home, 'config.json'), '[]');
      const e = await fails(readConfig(home));
      assert.is(e.code, 'DS0210');
      assert.is(e.message, `${join(home, 'config.json')} is not a valid dstack configuration: not a JSON object`);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'findRemote: by name, the default, and what to do when there is none',
  withTimeout(5000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-cfg-'));
    try {
      assert.is(
        formatError(await fails(findRemote(home))),
        'error DS0211: no remote is configured\n  = add one: dstack config ssh --name NAME --host user@host[:port], or dstack config aws --name NAME --region REGION --bucket BUCKET',
      );
      assert.is(
        formatError(await fails(findRemote(home, 'lab'))),
        "error DS0211: no remote named 'lab'\n  = add one: dstack config ssh --name NAME --host user@host[:port], or dstack config aws --name NAME --region REGION --bucket BUCKET",
      );
      const lab = { name: 'lab', kind: 'ssh' as const, hosts: [{ user: 'a', host: 'h', port: 22 }], jobsPerHost: 1 };
      const gpu = { ...lab, name: 'gpu' };
      await writeConfig(home, { remotes: [lab, gpu] });
      assert.equal(await findRemote(home, 'gpu'), gpu);
      assert.is(
        formatError(await fails(findRemote(home))),
        'error DS0211: no default remote\n  = name one with --remote NAME (lab, gpu), or make one the default: dstack config ssh --name NAME --default',
      );
      assert.is(
        formatError(await fails(findRemote(home, 'cpu'))),
        "error DS0211: no remote named 'cpu'\n  = configured remotes: lab, gpu (see `dstack config list`)",
      );
      await writeConfig(home, { default: 'gpu', remotes: [lab, gpu] });
      assert.equal(await findRemote(home), gpu);
      assert.is((await fails(findRemote(home, 'cpu'))).exitCode, 2);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test('shellQuote and shellJoin survive a real shell', () => {
  const words = ['plain', 'with space', "it's", '$HOME', '`x`', 'a"b', '', '*', 'ünï', 'new\nline'];
  const out = execFileSync('sh', ['-c', `printf '%s\\0' ${shellJoin(words)}`]);
  assert.equal(out.toString('utf8').split('\0').slice(0, -1), words);
  assert.is(shellQuote('a/b.c:d=e'), 'a/b.c:d=e');
  assert.is(shellQuote("it's"), `'it'\\''s'`);
});

test('boundToChannel keeps output and exit status, and ends the command at stdin EOF', () => {
  const r = execFileSync('sh', ['-c', `${boundToChannel("echo 'out'; echo err >&2; exit 3")} </dev/null 2>&1; echo "status=$?"`], { encoding: 'utf8' });
  // stdin is /dev/null: EOF at once, so the command may be terminated before or after it prints.
  assert.match(r, /status=(3|143)\n$/);
  const kept = execFileSync('sh', ['-c', `sleep 2 | { ${boundToChannel("echo 'out'; exit 3")}; echo "status=$?"; }`], { encoding: 'utf8' });
  assert.is(kept, 'out\nstatus=3\n');
  const started = Date.now();
  // (the shell reports "Terminated" on stderr)
  const killed = execFileSync('sh', ['-c', `sleep 0.3 | { ${boundToChannel('sleep 20')}; echo "status=$?"; }`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  assert.is(killed, 'status=143\n');
  assert.ok(Date.now() - started < 15_000, 'terminated long before sleep 20 ends');
});

test.run();
