/**
 * `dstack run --remote` on an SSH pool, end to end over the built binary: two real OpenSSH hosts
 * (test/helpers/ssh-hosts.ts) configured with `dstack config ssh`, whose job containers run on this
 * machine's engine. Host keys go to a temporary known_hosts through DSTACK_KNOWN_HOSTS (a knob for
 * tests only). Every job container carries `dstack.home=<the project's home>`, which cleanup sweeps.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoCrash, aThenB, containersOf, createProject, runNameOf, type Project, type PsRunWithJobs } from '../helpers/cli.js';
import { configurePool } from '../helpers/pool.js';
import { clientKey, removeHost, startHost, sweepHosts, type TestHost } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';

const WORKFLOWS = `workflows:
${aThenB(IMAGE)}  - name: nap
    image: ${IMAGE}
    commands:
      - sleep 1
      - echo napped
  - name: long
    image: ${IMAGE}
    commands:
      - trap 'echo got-term; mkdir -p out; echo partial > out/p.txt; exit 0' TERM
      - echo long-started
      - while true; do sleep 0.1; done
    artifacts:
      - out
`;

let hosts: TestHost[] = [];
let p: Project;

const jobFolders = async (): Promise<string[]> =>
  (await Promise.all(hosts.map(async (h) => (await readdir(join(h.home, '.dstack', 'jobs')).catch(() => [] as string[])).map((d) => `${h.name}:${d}`)))).flat();

test.before(withTimeout(60_000, async () => {
  hosts = await Promise.all([startHost(), startHost()]);
  p = await createProject({ workflows: WORKFLOWS, files: { 'code.txt': 'the code\n' } });
  await configurePool(p, hosts);
}));

test.after(withTimeout(60_000, async () => {
  await p?.cleanup();
  await Promise.all(hosts.map((h) => removeHost(h)));
  await sweepHosts();
}));

const env = (): Record<string, string> => ({ DSTACK_KNOWN_HOSTS: join(p.home, 'known_hosts') });

test(
  'run --remote pool: logs back, deps through the pool, artifacts home; ps shows BACKEND ssh:pool; nothing left on the hosts',
  withTimeout(60_000, async () => {
    const r = await p.run(['run', 'b', '--remote', 'pool'], { env: env() });
    assertNoCrash(r);
    assert.is(r.exitCode, 0, r.stderr);
    assert.ok(r.stdout.includes('a | a-says-hi\n'), r.stdout);
    assert.ok(r.stdout.includes('b | b-reads-content-from-a\n'), r.stdout);
    assert.match(r.stderr, /a: new host \[127\.0\.0\.1\]:\d+: trusting its ssh-ed25519 key SHA256:\S+ on first use/);
    assert.match(r.stderr, /a: sent \d+ bytes \(\d+ objects?\) to root@127\.0\.0\.1:\d+\n/);
    const name = runNameOf(r.stderr);
    const run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
    assert.is(run.backend, 'ssh:pool');
    assert.equal(run.jobs.map((j) => [j.workflow, j.status, j.artifacts]), [['a', 'done', ['out/x.txt']], ['b', 'done', []]]);
    const table = await p.run(['ps']);
    assert.match(table.stdout, new RegExp(`${name}\\s+b\\s+.*done\\s+ssh:pool`));
    const cp = await p.run(['cp', name, 'out/x.txt', join(p.dir, 'copied.txt')]);
    assert.is(cp.exitCode, 0, cp.stderr);
    assert.equal(await containersOf(p.home), []);
    assert.equal(await jobFolders(), []);
  }),
);

test(
  'a second run of the unchanged snapshot sends no code bytes; --remote alone uses the default remote',
  withTimeout(60_000, async () => {
    // The first test left the snapshot's objects on the host(s) it ran on; run once on each to be sure.
    await Promise.all([p.run(['run', 'nap', '--remote'], { env: env() }), p.run(['run', 'nap', '--remote'], { env: env() })]);
    const r = await p.run(['run', 'nap', '--remote'], { env: env() });
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /nap: sent 0 bytes \(0 objects\) to root@127\.0\.0\.1:\d+\n/);
  }),
);

test(
  'a pool of two hosts (one job per host) runs three independent runs at once, on both hosts',
  withTimeout(90_000, async () => {
    const started = Date.now();
    const results = await Promise.all([0, 1, 2].map(() => p.run(['run', 'nap', '--remote', 'pool'], { env: env() })));
    for (const r of results) {
      assertNoCrash(r);
      assert.is(r.exitCode, 0, r.stderr);
      assert.ok(r.stdout.includes('napped'), r.stdout);
    }
    const used = results.map((r) => /running on root@127\.0\.0\.1:(\d+)/.exec(r.stderr)?.[1]);
    assert.equal(new Set(used).size, 2, `both hosts used: ${used.join(', ')}`);
    assert.ok(Date.now() - started < 60_000);
    assert.equal(await containersOf(p.home), []);
    assert.equal(await jobFolders(), []);
  }),
);

test(
  'Ctrl-C of a remote run: the container on the host gets SIGTERM, artifacts come home, stopped, exit 130, nothing left',
  withTimeout(60_000, async () => {
    const bg = p.start(['run', 'long', '--remote', 'pool'], { env: { ...env(), DSTACK_STOP_GRACE: '5' } });
    await bg.waitFor((out) => out.includes('long-started'), 30_000);
    assert.equal((await containersOf(p.home)).length, 1);
    bg.signal('SIGINT');
    const r = await bg.result;
    assertNoCrash(r);
    assert.is(r.exitCode, 130, r.stderr);
    assert.ok(r.stdout.includes('got-term'), r.stdout);
    const run = await p.json<PsRunWithJobs>(['ps', runNameOf(r.stderr), '--json']);
    assert.equal(run.jobs.map((j) => [j.status, j.artifacts]), [['stopped', ['out/p.txt']]]);
    assert.equal(await containersOf(p.home), []);
    assert.equal(await jobFolders(), []);
  }),
);

test(
  '`dstack stop RUN` of a remote run: stopped, nothing left on the host',
  withTimeout(60_000, async () => {
    const bg = p.start(['run', 'long', '--remote', 'pool'], { env: { ...env(), DSTACK_STOP_GRACE: '5' } });
    await bg.waitFor((out) => out.includes('long-started'), 30_000);
    const name = runNameOf(bg.stderr());
    const stop = await p.run(['stop', name], { env: env() });
    assertNoCrash(stop);
    assert.is(stop.exitCode, 0, stop.stderr);
    const r = await bg.result;
    assert.is(r.exitCode, 130, r.stderr);
    const run = await p.json<PsRunWithJobs>(['ps', name, '--json']);
    assert.is(run.status, 'stopped');
    assert.equal(await containersOf(p.home), []);
    assert.equal(await jobFolders(), []);
  }),
);

test(
  'an unknown remote and an unreachable pool: exact errors, exits 2 and 3',
  withTimeout(60_000, async () => {
    const unknown = await p.run(['run', 'nap', '--remote', 'nope'], { env: env() });
    assertNoCrash(unknown);
    assert.is(unknown.exitCode, 2);
    assert.ok(unknown.stderr.startsWith("error DS0211: no remote named 'nope'\n"), unknown.stderr);
    const gone = await startHost();
    await removeHost(gone);
    const add = await p.run(['config', 'ssh', '--name', 'dead', '--host', `root@127.0.0.1:${gone.port}`, '--identity', (await clientKey()).path]);
    assert.is(add.exitCode, 0, add.stderr);
    const r = await p.run(['run', 'nap', '--remote', 'dead'], { env: env() });
    assertNoCrash(r);
    assert.is(r.exitCode, 3, r.stderr);
    assert.ok(r.stderr.includes(`error DS0205: cannot reach root@127.0.0.1:${gone.port}: connection refused (is sshd running on that port?)\n`), r.stderr);
  }),
);

test.run();
