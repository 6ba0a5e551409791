/**
 * A run on a remote backend (the SSH pool, on a real OpenSSH host) is the team's to see without a
 * push: its record goes to the team bucket (a shared folder here) as it starts — a teammate sees it
 * `running` in `ps --remote` — and whole when it ends, artifacts and logs included.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createProject, runNameOf, sleep, type Project, assertOk as ok } from '../helpers/cli.js';
import { assertNoHostOrContainerLeft, configurePool } from '../helpers/pool.js';
import { removeHost, startHost, type TestHost } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const WORKFLOWS = `workflows:
  - name: slow
    image: ${IMAGE}
    commands:
      - echo slow-started
      - sleep 4
      - mkdir -p out && echo made-remotely > out/r.txt
    artifacts: [out]
`;
const FILES = { '.dstack/repo-id': 'local-aabbccddeeff00112233445566778899\n' };

let host: TestHost;
let dir: string;
let alice: Project;
let bob: Project;

test.before(
  withTimeout(120_000, async () => {
    dir = await mkdtemp(join(tmpdir(), 'dstack-e2e-team-remote-'));
    host = await startHost();
    alice = await createProject({ workflows: WORKFLOWS, files: FILES, env: { DSTACK_OWNER: 'alice' } });
    bob = await createProject({ workflows: WORKFLOWS, files: FILES, env: { DSTACK_OWNER: 'bob' } });
    await configurePool(alice, [host]);
    for (const p of [alice, bob]) ok(await p.run(['config', 'folder', '--name', 'team', '--path', dir]), 'config folder');
  }),
);
test.after(
  withTimeout(120_000, async () => {
    await rm(dir, { recursive: true, force: true });
  }),
);

test('a pool run is in the team bucket while it runs and when it ends, with its artifacts and logs', withTimeout(180_000, async () => {
  const bg = alice.start(['run', 'slow', '--remote', 'pool'], { env: { DSTACK_KNOWN_HOSTS: join(alice.home, 'known_hosts') } });
  await bg.waitFor((out) => out.includes('slow-started'), 60_000);
  const name = runNameOf(bg.stderr());
  // Bob polls the bucket (no push was made) until the run shows there, running.
  let seen: { run: string; status: string; owner: string; backend: string }[] = [];
  for (const deadline = Date.now() + 30_000; !seen.some((r) => r.run === name) && Date.now() < deadline; await sleep(200)) {
    seen = await bob.json(['ps', '--remote', '--json']);
  }
  assert.equal(seen.map((r) => [r.run, r.owner, r.backend]), [[name, 'alice', 'ssh:pool']]);
  assert.ok(['submitted', 'provisioning', 'downloading', 'running', 'uploading'].includes(seen[0]!.status), seen[0]!.status);
  ok(await bg.result, 'the run');
  const after = await bob.json<{ run: string; status: string }[]>(['ps', '--remote', '--json']);
  assert.equal(after.map((r) => [r.run, r.status]), [[name, 'done']]);
  const ls = ok(await bob.run(['ls', name]), 'ls');
  assert.match(ls.stdout, /out\/r\.txt +14 B +slow/);
  const logs = ok(await bob.run(['logs', name]), 'logs');
  assert.is(logs.stdout, 'slow-started\n');
}));

test('sweep: no SSH host and no job container left behind', withTimeout(120_000, async () => {
  await alice.cleanup();
  await bob.cleanup();
  await removeHost(host);
  await assertNoHostOrContainerLeft();
}));

test.run();
