/**
 * The SSH pool backend against real OpenSSH hosts (test/helpers/ssh-hosts.ts) whose jobs run on this
 * machine's Docker engine: a trivial job, artifacts and deps through the host, a second run that
 * sends nothing, ports through the tunnel, a host without Docker, a host killed mid-job. Every job
 * container carries `dstack.test=ssh-backend`; the last test proves none is left.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import type { Manifest } from '../../src/artifacts/types.js';
import { sshPlugin, type SshBackend } from '../../src/backends/ssh/index.js';
import type { RemoteMachine } from '../../src/backends/ssh-host/machine.js';
import type { SshRemote } from '../../src/backends/ssh/remote.js';
import type { BackendHandle, Machine, RunningJob } from '../../src/engine/backend.js';
import type { JobSpec } from '../../src/engine/types.js';
import { closeTestDocker, containersLabelled, ensureBusybox, sweepContainers } from '../helpers/docker.js';
import { busyboxSpec as spec, jobHarness, type Harness } from '../helpers/job-harness.js';
import { clientKey, killHost, removeHost, restartHost, startHost, sweepHosts, type TestHost } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';
import { until } from '../helpers/wait.js';
import { rejectsWith } from '../helpers/errors.js';

const TEST_LABEL = 'ssh-backend';
let home = '';
let project = '';
let knownHosts = '';
let store: LocalArtifactStore;
let snap: Manifest;
let pool: TestHost[] = [];
let counter = 0;

test.before(withTimeout(60_000, async () => {
  await ensureBusybox();
  home = await mkdtemp(join(tmpdir(), 'dstack-sshb-home-'));
  project = await mkdtemp(join(tmpdir(), 'dstack-sshb-project-'));
  knownHosts = join(home, 'known_hosts');
  await writeFile(join(project, 'hello.txt'), 'hello from the snapshot\n');
  await writeFile(join(project, 'run.sh'), '#!/bin/sh\necho "script ran with $1"\n');
  await chmod(join(project, 'run.sh'), 0o755);
  await mkdir(join(project, 'src'));
  await writeFile(join(project, 'src', 'lib.txt'), 'lib\n');
  await symlink('src/lib.txt', join(project, 'lib-link'));
  store = new LocalArtifactStore({ home });
  snap = (await store.save(project, [{ path: 'hello.txt', mount: false }, { path: 'run.sh', mount: false }, { path: 'src', mount: false }, { path: 'lib-link', mount: false }])).manifest;
  pool = await Promise.all([startHost(), startHost()]);
}));

test.after(withTimeout(60_000, async () => {
  await sweepContainers(`dstack.test=${TEST_LABEL}`);
  await Promise.all(pool.map((h) => removeHost(h)));
  await sweepHosts();
  closeTestDocker();
  await rm(home, { recursive: true, force: true });
  await rm(project, { recursive: true, force: true });
}));

async function openPool(hosts: readonly TestHost[], extra: Record<string, unknown> = {}): Promise<SshBackend> {
  const key = await clientKey();
  const remote: SshRemote = { name: 'test', kind: 'ssh', hosts: hosts.map((h) => ({ user: h.user, host: h.host, port: h.port })), identity: key.path, jobsPerHost: 2 };
  return sshPlugin.open({ home, remote, settings: { knownHostsPath: knownHosts, labels: { 'dstack.test': TEST_LABEL }, leaseTtlSeconds: 3, ...extra } }) as SshBackend;
}

function harness(s: JobSpec): Harness {
  counter += 1;
  return jobHarness(s, `sshb-${process.pid}-${counter}`);
}

interface Ran {
  readonly h: Harness;
  readonly machine: RemoteMachine;
  readonly exit: Awaited<ReturnType<RunningJob['wait']>>;
  readonly out: string;
  readonly err: string;
  readonly manifest: Manifest;
}

/** provision → bootstrap → stage → start → wait → collect → teardown, as the executor does. */
async function runJob(backend: SshBackend, s: JobSpec, options: { deps?: Manifest[]; env?: Record<string, string>; during?: (m: RemoteMachine, h: Harness, out: () => string) => Promise<void> } = {}): Promise<Ran> {
  const h = harness(s);
  let machine: Machine | undefined;
  try {
    machine = await backend.provision(h.ctx);
    await machine.bootstrap(h.ctx);
    await machine.stage(h.ctx, { snapshot: snap, repoRoot: project, deps: options.deps ?? [], store });
    const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    const job = await machine.start(h.ctx, options.env ?? {}, (stream, chunk) => chunks[stream].push(chunk));
    await options.during?.(machine as RemoteMachine, h, () => Buffer.concat(chunks.stdout).toString());
    const exit = await job.wait();
    // As the executor: a lost job is failed, nothing is collected.
    const manifest = exit.lost ? { version: 1 as const, entries: [], size: 0 } : await machine.collect(h.ctx, s.artifacts, store);
    return { h, machine: machine as RemoteMachine, exit, out: Buffer.concat(chunks.stdout).toString(), err: Buffer.concat(chunks.stderr).toString(), manifest };
  } finally {
    await machine?.teardown();
  }
}


const jobFolders = async (h: TestHost): Promise<string[]> => readdir(join(h.home, '.dstack', 'jobs')).catch(() => []);


test(
  'a trivial job on one host: logs back live, exit code, the code at /workflow, secrets only in env, nothing left after',
  withTimeout(60_000, async () => {
    const backend = await openPool([pool[0]!]);
    try {
      await backend.check(new AbortController().signal);
      const s = spec({ script: 'cat hello.txt; ./run.sh arg; cat lib-link; ls -l run.sh | cut -c1-10; echo "token=$TOKEN"; echo oops >&2; exit 3', env: { TOKEN: '${{ secrets.TOKEN }}' } });
      const secret = `s3cr3t-${process.pid}`;
      const r = await runJob(backend, s, {
        env: { TOKEN: secret },
        during: async (m) => {
          // While the job runs, no file that dstack made on the host holds the secret.
          const grep = await (backend as unknown as { connection: SshBackend['connection'] }).connection(pool[0]!).then((c) => c.exec(`grep -rl ${secret} ${pool[0]!.home}/.dstack || true`));
          assert.is(grep.stdout.toString(), '');
          assert.ok(m.host.endsWith(`:${pool[0]!.port}`));
        },
      });
      assert.equal(r.exit, { exitCode: 3 });
      assert.is(r.out, `hello from the snapshot\nscript ran with arg\nlib\n-rwxr-xr-x\ntoken=${secret}\n`);
      assert.is(r.err, 'oops\n');
      const handle = r.h.handles.at(-1)!;
      assert.is(handle.remote, 'test');
      assert.is(handle.host, `root@127.0.0.1:${pool[0]!.port}`);
      assert.ok(String(handle.jobDir).startsWith(`${pool[0]!.home}/.dstack/jobs/`));
      assert.not.ok(JSON.stringify(r.h.handles).includes(secret));
      assert.ok(r.h.notices.some((n) => n.kind === 'info' && /^sent \d+ bytes \(\d+ objects\) to root@127\.0\.0\.1:/.test(n.message)));
      // Gone after teardown: the container (by label) and the job folder.
      assert.equal(await containersLabelled(`dstack.run=${r.h.ctx.run}`), []);
      assert.equal(await jobFolders(pool[0]!), []);
      assert.equal(await backend.observe(handle), { state: 'gone' });
    } finally {
      await backend.close();
    }
  }),
);

test(
  'artifacts and deps round trip through a pool of two hosts; a second run of the same snapshot sends no bytes',
  withTimeout(90_000, async () => {
    const backend = await openPool(pool);
    try {
      await backend.check(new AbortController().signal);
      const a = await runJob(
        backend,
        spec({
          workflow: 'a',
          script: 'mkdir -p out/sub && echo data-a > out/data.txt && printf "#!/bin/sh\\necho tool\\n" > out/tool.sh && chmod +x out/tool.sh && ln -s data.txt out/link && echo deep > out/sub/deep.txt',
          artifacts: [{ path: 'out', mount: false }, { path: 'absent.txt', mount: false }],
        }),
      );
      assert.equal(a.exit, { exitCode: 0 });
      const byPath = new Map(a.manifest.entries.map((e) => [e.path, e]));
      assert.equal([...byPath.keys()], ['out', 'out/data.txt', 'out/link', 'out/sub', 'out/sub/deep.txt', 'out/tool.sh']);
      assert.equal(byPath.get('out/link'), { type: 'symlink', path: 'out/link', target: 'data.txt' });
      const tool = byPath.get('out/tool.sh');
      assert.ok(tool?.type === 'file' && tool.mode === 0o755);
      const data = byPath.get('out/data.txt');
      assert.ok(data?.type === 'file' && (await readFile(store.objects.path(data.hash), 'utf8')) === 'data-a\n');
      assert.ok(a.h.notices.some((n) => n.kind === 'info' && n.message === "artifact 'absent.txt' was not found in /workflow"));
      assert.ok(a.machine.received.objects >= 1);

      // b sees a's artifacts at the same paths, read-only, and may save them again as its own.
      const b = await runJob(
        backend,
        spec({
          workflow: 'b',
          script: 'cat out/data.txt out/link && out/tool.sh && cat out/sub/deep.txt && (echo x > out/data.txt 2>/dev/null && echo writable || echo read-only) && cat hello.txt > res.txt',
          artifacts: [{ path: 'res.txt', mount: false }, { path: 'out', mount: false }],
        }),
        { deps: [a.manifest] },
      );
      assert.is(b.out, 'data-a\ndata-a\ntool\ndeep\nread-only\n');
      assert.equal(b.exit, { exitCode: 0 });
      const bPaths = b.manifest.entries.map((e) => e.path);
      assert.ok(bPaths.includes('res.txt') && bPaths.includes('out/tool.sh'), bPaths.join(','));
      // The code and the deps' objects were on the host already (same host or not, b's snapshot is a's).
      const again = await runJob(backend, spec({ workflow: 'c', script: 'cat hello.txt' }));
      const again2 = await runJob(backend, spec({ workflow: 'c', script: 'cat hello.txt' }));
      assert.is(again.out, 'hello from the snapshot\n');
      // After one run on each host, the snapshot's objects are everywhere: nothing is sent.
      assert.is(again2.machine.sent.bytes, 0, JSON.stringify(again2.machine.sent));
      assert.is(again2.machine.sent.objects, 0);
      for (const h of pool) assert.equal(await jobFolders(h), []);
    } finally {
      await backend.close();
    }
  }),
);

test(
  'a second run of the same snapshot on the same host sends 0 bytes; the first sent every object',
  withTimeout(60_000, async () => {
    const fresh = await startHost();
    const backend = await openPool([fresh]);
    try {
      const first = await runJob(backend, spec({ script: 'true' }));
      const files = snap.entries.filter((e) => e.type === 'file');
      assert.equal(first.machine.sent, { bytes: files.reduce((n, e) => n + (e.type === 'file' ? e.size : 0), 0), objects: new Set(files.map((e) => (e.type === 'file' ? e.hash : ''))).size });
      const second = await runJob(backend, spec({ script: 'true' }));
      assert.equal(second.machine.sent, { bytes: 0, objects: 0 });
    } finally {
      await backend.close();
      await removeHost(fresh);
    }
  }),
);

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

test(
  'published ports reach the user through an SSH tunnel with a local URL',
  withTimeout(60_000, async () => {
    const backend = await openPool([pool[1]!]);
    try {
      await runJob(backend, spec({ ports: 1, script: 'mkdir -p www && echo served-by-the-host > www/index.html && httpd -f -p $PORT_0 -h www & sleep 30' }), {
        during: async (m, h) => {
          const port = h.notices.find((n) => n.kind === 'port');
          assert.ok(port && port.kind === 'port');
          assert.is(port.url, `http://127.0.0.1:${port.containerPort}`);
          let body = '';
          await until('the page through the tunnel', 15_000, async () => {
            body = await get(`${port.url}/index.html`).catch(() => '');
            return body !== '';
          });
          assert.is(body, 'served-by-the-host\n');
          // Killing the job ends it; teardown closes the tunnel.
          await (await backend.connection(pool[1]!)).exec('true');
          void m;
          h.abort.abort();
        },
      });
    } finally {
      await backend.close();
    }
  }),
);

test(
  'a host without Docker: a clear error naming the host (exit 3); in a pool, the others are used and it is announced',
  withTimeout(60_000, async () => {
    const bare = await startHost({ docker: false });
    const alone = await openPool([bare]);
    const mixed = await openPool([bare, pool[0]!]);
    try {
      const e = await rejectsWith(alone.check(new AbortController().signal), 'DS0200');
      assert.match(e.message, `Docker is missing or unusable on root@127.0.0.1:${bare.port}: /var/run/docker.sock cannot be opened there`);
      assert.is(e.exitCode, 3);
      await mixed.check(new AbortController().signal);
      const r = await runJob(mixed, spec({ script: 'echo ok' }));
      assert.is(r.out, 'ok\n');
      assert.ok(r.machine.host.endsWith(`:${pool[0]!.port}`));
      assert.ok(r.h.notices.some((n) => n.kind === 'info' && n.message.startsWith(`host root@127.0.0.1:${bare.port} is left out of the pool for this run: Docker is missing`)));
    } finally {
      await alone.close();
      await mixed.close();
      await removeHost(bare);
    }
  }),
);

test(
  'an unreachable host: DS0205 naming it, exit 3',
  withTimeout(30_000, async () => {
    const gone = await startHost();
    await removeHost(gone);
    const backend = await openPool([gone]);
    try {
      const e = await rejectsWith(backend.check(new AbortController().signal), 'DS0205');
      assert.match(e.message, `cannot reach root@127.0.0.1:${gone.port}: connection refused`);
      assert.is(e.exitCode, 3);
    } finally {
      await backend.close();
    }
  }),
);

test(
  'a host killed mid-job: the job ends failed "lost connection to …"; the next dstack that touches the host reaps what is left',
  withTimeout(90_000, async () => {
    let victim = await startHost();
    const backend = await openPool([victim]);
    let handle: BackendHandle | undefined;
    try {
      const r = await runJob(backend, spec({ script: 'echo started; sleep 60' }), {
        during: async (_m, h, out) => {
          await until('the job container', 10_000, async () => (await containersLabelled(`dstack.run=${h.ctx.run}`, 'dstack.test')).length === 1);
          await until('the job to run', 10_000, () => out().includes('started'));
          await killHost(victim);
        },
      }).catch((e: unknown) => e);
      assert.not.instance(r, Error, String(r));
      const ran = r as Ran;
      assert.equal(ran.exit, { lost: 'lost', reason: `lost connection to root@127.0.0.1:${victim.port}` });
      handle = ran.h.handles.at(-1);
      // Nothing runs it any more: observe says gone (the host does not answer).
      assert.equal(await backend.observe(handle!), { state: 'gone' });
      const left = await containersLabelled(`dstack.run=${ran.h.ctx.run}`);
      assert.is(left.length, 1, 'the dead machine keeps its stopped container until it is reaped');
      // The machine comes back: the next dstack reaps the leftovers through the recorded handle.
      victim = await restartHost(victim);
      const later = await openPool([victim]);
      try {
        await later.reap(handle!);
        assert.equal(await containersLabelled(`dstack.run=${ran.h.ctx.run}`), []);
        assert.equal(await jobFolders(victim), []);
        // And a job runs there again once the dead lease has expired.
        const next = await runJob(later, spec({ script: 'echo again' }));
        assert.is(next.out, 'again\n');
      } finally {
        await later.close();
      }
    } finally {
      await backend.close();
      await removeHost(victim);
    }
  }),
);

test(
  'nothing leaked: no job container and no test host of this process is left',
  withTimeout(30_000, async () => {
    assert.is(await sweepContainers(`dstack.test=${TEST_LABEL}`), 0);
    for (const h of pool) assert.equal(await jobFolders(h), []);
    assert.ok(existsSync(home));
  }),
);

test.run();
