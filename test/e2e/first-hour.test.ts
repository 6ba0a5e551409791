/**
 * What a new user meets in the first hour (issue 8), end to end over the built binary: a mistyped
 * command, option values in help, `ps -w` into a pipe, and 0.7-style artifact folders.
 */
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BIN, assertNoContainersLeft, assertNoCrash, createProject, runNameOf, sleep, type CliResult, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

function usage(r: CliResult, stderr: string): void {
  assert.is(r.exitCode, 2, r.stderr);
  assertNoCrash(r);
  assert.is(r.stdout, '');
  assert.is(r.stderr, stderr);
}

test(
  'a mistyped command gets the closest ones, not a numbered list of every command',
  withTimeout(30_000, async () => {
    const p = await createProject();
    try {
      const help = ' (every command: `dstack --help`)';
      usage(await p.run(['stpo', 'x']), `error DS0100: unknown command 'stpo'\n  = did you mean \`dstack stop\`?${help}\n`);
      usage(await p.run(['lgos']), `error DS0100: unknown command 'lgos'\n  = did you mean \`dstack logs\`?${help}\n`);
      // Two letters swapped is one edit: as near to `ps` as a wrong letter is to `cp`.
      usage(await p.run(['sp']), `error DS0100: unknown command 'sp'\n  = did you mean \`dstack ps\` or \`dstack cp\`?${help}\n`);
      usage(
        await p.run(['frobnicate']),
        "error DS0100: unknown command 'frobnicate'\n  = commands: run, ps, logs, stop, rm, ls, cp, tags, prune, push, pull, store, secrets, config, init; see `dstack --help`\n",
      );
      usage(await p.run(['tags', 'ad', 'x']), "error DS0100: unknown command 'dstack tags ad'\n  = did you mean `dstack tags add`?\n");
      usage(await p.run(['secrets', 'remove', 'X']), "error DS0100: unknown command 'dstack secrets remove'\n  = one of: dstack secrets add, dstack secrets list, dstack secrets delete\n");
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'help and usage errors name option values (--since DURATION), never #0, and stay aligned',
  withTimeout(30_000, async () => {
    const p = await createProject();
    try {
      const logs = await p.run(['logs', '--help']);
      assert.is(logs.exitCode, 0, logs.stderr);
      assert.ok(logs.stdout.includes('\n  -f,--follow         keep printing new output until the run ends\n  --since DURATION    only output newer than this'), logs.stdout);
      for (const args of [['prune', '--help'], ['tags', 'add', '--help'], ['config', 'ssh', '--help'], ['--help']]) {
        const r = await p.run(args);
        assert.is(r.exitCode, 0, r.stderr);
        assert.not.match(r.stdout, /#\d/, `${args.join(' ')}:\n${r.stdout}`);
      }
      assert.ok((await p.run(['prune', '--help'])).stdout.includes('--older-than DURATION'));
      assert.ok((await p.run(['tags', 'add', '--help'])).stdout.includes('-a,--artifact PATH'));
      const missing = await p.run(['logs']);
      assert.is(missing.exitCode, 2);
      assert.ok(missing.stderr.includes('$ dstack logs [-f,--follow] [--since DURATION] <RUN>\n'), missing.stderr);
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'ps -w into a pipe: plain tables a refresh apart, no screen-clearing codes, and it ends once the reader goes',
  withTimeout(60_000, async () => {
    const p = await createProject();
    try {
      const r = await execa('bash', ['-c', `"${process.execPath}" "${BIN}" ps -w | head -3; echo "dstack-exit=\${PIPESTATUS[0]}" >&2`], {
        cwd: p.dir,
        env: p.env,
        extendEnv: false,
        reject: false,
        timeout: 30_000,
        stripFinalNewline: false,
      });
      assert.is(r.stdout, 'No runs yet. Start one with `dstack run WORKFLOW`.\n\nNo runs yet. Start one with `dstack run WORKFLOW`.\n');
      assert.not.ok(String(r.stdout).includes('\x1b'));
      assert.is(r.stderr, 'dstack-exit=0\n');
    } finally {
      await p.cleanup();
    }
  }),
);

test(
  'artifact folders are there before the job, as in dstack 0.7: echo hi > output/hello.txt with artifacts: [./output]',
  withTimeout(60_000, async () => {
    let p: Project | undefined;
    try {
      p = await createProject({
        workflows: `workflows:\n  - name: hello\n    image: ${IMAGE}\n    commands:\n      - echo hi > output/hello.txt\n    artifacts:\n      - path: ./output\n`,
      });
      const r = await p.run(['run', 'hello']);
      assert.is(r.exitCode, 0, r.stderr);
      const ls = await p.run(['ls', runNameOf(r.stderr)]);
      assert.ok(ls.stdout.startsWith('PATH              SIZE  JOB\noutput/hello.txt  3 B   hello\n'), ls.stdout);
    } finally {
      await p?.cleanup();
    }
  }),
);

test(
  'a detached run with a port: ps RUN, ps --json and logs say where it is reached, while it runs',
  withTimeout(90_000, async () => {
    const p = await createProject({
      workflows: `workflows:\n  - name: web\n    image: ${IMAGE}\n    ports: 1\n    commands:\n      - mkdir -p www && echo hello-from-web > www/index.html\n      - httpd -f -p $$PORT_0 -h www\n`,
    });
    let name = '';
    try {
      const r = await p.run(['run', 'web', '-d']);
      assert.is(r.exitCode, 0, r.stderr);
      name = r.stdout.trim();
      let url = '';
      for (const deadline = Date.now() + 60_000; !url; await sleep(200)) {
        const job = (await p.json<PsRunWithJobs>(['ps', name, '--json'])).jobs[0] as PsRunWithJobs['jobs'][number] & { ports: { port: number; url: string }[] };
        if (job.status === 'running' && job.ports.length) url = job.ports[0]!.url;
        if (Date.now() > deadline) throw new Error(`no port recorded for ${name}`);
      }
      const port = Number(new URL(url).port);
      assert.is(url, `http://127.0.0.1:${port}`);
      // The URL is real: the job's own server answers there.
      let body = '';
      for (const deadline = Date.now() + 30_000; body !== 'hello-from-web\n'; await sleep(200)) {
        body = await fetch(url).then((res) => res.text(), () => '');
        if (Date.now() > deadline) throw new Error(`nothing answered at ${url}`);
      }
      const table = await p.run(['ps', name]);
      assert.match(table.stdout, /^JOB +WORKFLOW +STATUS +EXIT +DURATION +REASON +URL\n/);
      assert.ok(table.stdout.includes(` ${url}\n`), table.stdout);
      const listed = await p.json<{ run: string; urls: string[] }[]>(['ps', '--json']);
      assert.equal(listed.map((x) => [x.run, x.urls]), [[name, [url]]]);
      const logs = await p.run(['logs', name]);
      assert.is(logs.exitCode, 0, logs.stderr);
      assert.is(logs.stderr, `  web: port ${port} → ${url}\n`);

      assert.is((await p.run(['stop', name])).exitCode, 0);
      // Stopped: nothing answers there any more, so no URL is shown; the record keeps the port.
      const after = await p.run(['ps', name]);
      assert.not.ok(after.stdout.includes(url), after.stdout);
      assert.equal((await p.json<{ urls: string[] }[]>(['ps', '--json']))[0]!.urls, []);
      assert.is((await p.run(['logs', name])).stderr, '');
    } finally {
      if (name) await p.run(['stop', '-x', name]);
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
