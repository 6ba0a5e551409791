/**
 * `dstack config ssh|list|delete`, end to end over the built binary: the saved file (content and
 * mode 0600), the table and JSON listings, defaults, replacing and deleting, and every mistake with
 * its exact message and exit status 2.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoCrash, createProject, type CliResult, type Project } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const HOST_HINT = '  = expected user@host or user@host:port, e.g. ubuntu@10.0.0.5:2222\n';

function keyIn(p: Project): string {
  const path = join(p.home, 'lab_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path]);
  return path;
}

function fails(r: CliResult, stderr: string): void {
  assertNoCrash(r);
  assert.is(r.stderr, stderr);
  assert.is(r.stdout, '');
  assert.is(r.exitCode, 2);
}

test(
  'config ssh saves a remote (mode 0600); list shows it as a table and as JSON; the first is the default',
  withTimeout(30_000, async () => {
    const p = await createProject();
    try {
      const empty = await p.run(['config', 'list']);
      assert.equal([empty.exitCode, empty.stdout, empty.stderr], [0, '', 'No remotes configured; add one with `dstack config ssh --name NAME --host user@host[:port]` or `dstack config aws --name NAME --region REGION --bucket BUCKET`\n']);
      assert.equal(await p.json(['config', 'list', '--json']), { default: null, remotes: [] });

      const key = keyIn(p);
      const r = await p.run(['config', 'ssh', '--name', 'lab', '--host', 'ubuntu@10.0.0.5', '--host', 'me@[::1]:2222', '--identity', key, '--jobs-per-host', '2']);
      assertNoCrash(r);
      assert.is(r.exitCode, 0, r.stderr);
      assert.is(r.stderr, "Saved remote 'lab': 2 hosts, 2 jobs per host (the default); run with `dstack run WORKFLOW --remote`\n");
      const file = join(p.home, 'config.json');
      assert.is(statSync(file).mode & 0o777, 0o600);
      assert.equal(JSON.parse(readFileSync(file, 'utf8')), {
        default: 'lab',
        remotes: [
          {
            name: 'lab',
            kind: 'ssh',
            hosts: [
              { user: 'ubuntu', host: '10.0.0.5', port: 22 },
              { user: 'me', host: '::1', port: 2222 },
            ],
            identity: key,
            jobsPerHost: 2,
          },
        ],
      });

      const second = await p.run(['config', 'ssh', '--name', 'gpu', '--host', 'root@gpu.example.com:2200']);
      assert.is(second.stderr, "Saved remote 'gpu': 1 host, 1 job per host; run with `dstack run WORKFLOW --remote gpu`\n");
      const list = await p.run(['config', 'list']);
      assert.is(list.exitCode, 0);
      assert.is(
        list.stdout,
        [
          'NAME   KIND  HOSTS                          JOBS/HOST  IDENTITY',
          `lab *  ssh   ubuntu@10.0.0.5,me@[::1]:2222  2          ${key}`,
          'gpu    ssh   root@gpu.example.com:2200      1          (agent or ~/.ssh)',
          '',
        ].join('\n'),
      );
      const json = await p.json<{ default: string; remotes: { name: string }[] }>(['config', 'list', '--json']);
      assert.is(json.default, 'lab');
      assert.equal(json.remotes.map((x) => x.name), ['lab', 'gpu']);

      // --default alone switches the default to an existing remote.
      const sw = await p.run(['config', 'ssh', '--name', 'gpu', '--default']);
      assert.equal([sw.exitCode, sw.stderr], [0, "Remote 'gpu' is now the default\n"]);
      assert.is((await p.json<{ default: string }>(['config', 'list', '--json'])).default, 'gpu');
      assert.is(statSync(file).mode & 0o777, 0o600);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'a duplicate name is DS0212 unless --force; --force replaces in place and keeps unknown keys',
  withTimeout(30_000, async () => {
    const p = await createProject();
    try {
      assert.is((await p.run(['config', 'ssh', '--name', 'lab', '--host', 'a@h1'])).exitCode, 0);
      const file = join(p.home, 'config.json');
      const withExtra = { ...JSON.parse(readFileSync(file, 'utf8')), future: { keep: true } };
      writeFileSync(file, JSON.stringify(withExtra));
      fails(
        await p.run(['config', 'ssh', '--name', 'lab', '--host', 'b@h2']),
        "error DS0212: a remote named 'lab' already exists\n  = pass --force to replace it, or delete it first: dstack config delete lab\n",
      );
      const r = await p.run(['config', 'ssh', '--name', 'lab', '--host', 'b@h2', '--force']);
      assert.is(r.stderr, "Replaced remote 'lab': 1 host, 1 job per host (the default); run with `dstack run WORKFLOW --remote`\n");
      const saved = JSON.parse(readFileSync(file, 'utf8'));
      assert.equal(saved.remotes[0].hosts, [{ user: 'b', host: 'h2', port: 22 }]);
      assert.equal(saved.future, { keep: true });
      assert.is(statSync(file).mode & 0o777, 0o600);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'bad --host, --identity, --jobs-per-host and names: exact messages, exit 2, nothing written',
  withTimeout(30_000, async () => {
    const p = await createProject();
    try {
      const key = keyIn(p);
      const ssh = (...args: string[]): Promise<CliResult> => p.run(['config', 'ssh', '--name', 'x', ...args]);
      fails(await ssh('--host', 'root@'), `error DS0210: invalid --host 'root@': no host after @\n${HOST_HINT}`);
      fails(await ssh('--host', 'root@h:70000'), `error DS0210: invalid --host 'root@h:70000': port 70000 is out of range (1-65535)\n${HOST_HINT}`);
      fails(await ssh('--host', 'root@h:0'), `error DS0210: invalid --host 'root@h:0': port 0 is out of range (1-65535)\n${HOST_HINT}`);
      fails(await ssh('--host', 'root@h:ssh'), `error DS0210: invalid --host 'root@h:ssh': port 'ssh' is not a number\n${HOST_HINT}`);
      fails(await ssh('--host', 'h.example'), `error DS0210: invalid --host 'h.example': no user\n${HOST_HINT}`);
      fails(await ssh('--host', '@h'), `error DS0210: invalid --host '@h': no user before @\n${HOST_HINT}`);
      fails(await ssh('--host', 'root@bad host'), `error DS0210: invalid --host 'root@bad host': 'bad host' is not a host name or address\n${HOST_HINT}`);
      fails(await ssh('--host', 'a@h', '--host', 'a@h:22'), 'error DS0210: --host a@h is given twice\n');
      fails(await ssh(), 'error DS0100: give at least one --host user@host[:port]\n  = dstack config ssh --name x --host ubuntu@10.0.0.5\n');
      const missing = join(p.home, 'nope');
      fails(await ssh('--host', 'a@h', '--identity', missing), `error DS0210: identity file ${missing} does not exist\n  = give the private key file, e.g. --identity ~/.ssh/id_ed25519\n`);
      fails(await ssh('--host', 'a@h', '--identity', `${key}.pub`), `error DS0210: identity file ${key}.pub is a public key\n  = give the private key: --identity ${key}\n`);
      fails(await ssh('--host', 'a@h', '--jobs-per-host', '0'), "error DS0210: invalid --jobs-per-host '0'\n  = expected a whole number from 1 to 1000\n");
      fails(
        await p.run(['config', 'ssh', '--name', 'no/slash', '--host', 'a@h']),
        "error DS0210: invalid remote name 'no/slash'\n  = use letters, digits, - and _ (up to 63), starting with a letter or digit\n",
      );
      assert.equal(await p.json(['config', 'list', '--json']), { default: null, remotes: [] });

      writeFileSync(join(p.home, 'config.json'), '{"remotes": [');
      const broken = await p.run(['config', 'list']);
      assert.is(broken.exitCode, 2);
      assert.match(broken.stderr, new RegExp(`^error DS0210: ${join(p.home, 'config.json').replace(/[.]/g, '\\.')} is not a valid dstack configuration: `));
      assert.ok(broken.stderr.endsWith("  = fix or remove the file; `dstack config <ssh|aws|folder|s3>` writes a new one\n"), broken.stderr);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'config delete: unknown name, refusal without -y, deleting the default',
  withTimeout(30_000, async () => {
    const p = await createProject();
    try {
      fails(await p.run(['config', 'delete', 'lab', '-y']), "error DS0211: no remote named 'lab'\n  = no remote is configured\n");
      await p.run(['config', 'ssh', '--name', 'lab', '--host', 'a@h1']);
      await p.run(['config', 'ssh', '--name', 'gpu', '--host', 'a@h2']);
      fails(await p.run(['config', 'delete', 'zzz', '-y']), "error DS0211: no remote named 'zzz'\n  = configured remotes: lab, gpu\n");
      fails(await p.run(['config', 'delete', 'lab']), 'error DS0103: Delete remote lab: refused without confirmation\n  = pass -y to confirm: dstack config delete lab -y\n');
      const del = await p.run(['config', 'delete', 'lab', '-y']);
      assert.equal([del.exitCode, del.stderr], [0, `Deleted remote 'lab'; there is no default remote now (${join(p.home, 'config.json')})\n`]);
      assert.equal(await p.json(['config', 'list', '--json']), {
        default: null,
        remotes: [{ name: 'gpu', kind: 'ssh', hosts: [{ user: 'a', host: 'h2', port: 22 }], jobsPerHost: 1 }],
      });
      const del2 = await p.run(['config', 'delete', 'gpu', '-y']);
      assert.equal([del2.exitCode, del2.stderr], [0, `Deleted remote 'gpu' (${join(p.home, 'config.json')})\n`]);
      assert.is(statSync(join(p.home, 'config.json')).mode & 0o777, 0o600);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  '--help of each config command shows its examples',
  withTimeout(30_000, async () => {
    const p = await createProject();
    try {
      for (const [cmd, example] of [
        ['ssh', '$ dstack config ssh --name lab --host ubuntu@10.0.0.5 --host ubuntu@10.0.0.6'],
        ['list', '$ dstack config list --json'],
        ['delete', '$ dstack config delete lab -y'],
      ] as const) {
        const r = await p.run(['config', cmd, '--help']);
        assert.is(r.exitCode, 0);
        assert.ok(r.stdout.includes(example), r.stdout);
      }
    } finally {
      await p.cleanup();
    }
  }),
);

test.run();
