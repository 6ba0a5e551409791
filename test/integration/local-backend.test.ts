/**
 * The local backend against the real Docker engine, with the locally built busybox image: a job's
 * life (output, exit, env, ports, stop, kill, teardown, reap, limits, caches, image digest).
 * Every container carries `dstack.test=local-backend`; the last test proves none is left.
 * Deps, mounts and collecting are in local-backend-artifacts.test.ts.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import type { BackendHandle, BackendNotice, Machine } from '../../src/engine/backend.js';
import { localPlugin, type LocalBackend } from '../../src/backends/local/index.js';
import { BUSYBOX, testDocker } from '../helpers/docker.js';
import { busyboxSpec as spec } from '../helpers/job-harness.js';
import { NOWHERE } from '../helpers/registry.js';
import { withTimeout } from '../helpers/timeout.js';
import { until } from '../helpers/wait.js';
import { assertNothingLeft, backend, home, harness, rejectsWith, setUp, startJob, tearDown, withJob } from '../helpers/local-backend.js';

const TEST_LABEL = 'local-backend';

test.before(withTimeout(60_000, () => setUp(TEST_LABEL)));
test.after(withTimeout(60_000, () => tearDown(TEST_LABEL)));

test(
  'stdout and stderr arrive demultiplexed, the snapshot is at /workflow, exit 0',
  withTimeout(20_000, async () => {
    await withJob(spec({ script: 'echo out-line; echo err-line >&2; cat hello.txt' }), async (j) => {
      const exit = await j.job.wait();
      assert.equal(exit, { exitCode: 0 });
      assert.is(j.out(), 'out-line\nhello from the snapshot\n');
      assert.is(j.err(), 'err-line\n');
      assert.ok(j.h.handles.some((hd) => typeof hd.container === 'string'), 'container recorded');
      const labels = (await testDocker().inspectContainer(j.container())).Config.Labels;
      assert.is(labels['dstack.run'], j.h.ctx.run);
      assert.is(labels['dstack.job'], j.h.ctx.job);
      assert.is(labels['dstack.home'], home);
    });
  }),
);

test(
  'a non-zero exit code is reported as it is',
  withTimeout(20_000, async () => {
    await withJob(spec({ script: 'exit 3' }), async (j) => {
      assert.equal(await j.job.wait(), { exitCode: 3 });
    });
  }),
);

test(
  'env and PORT_0 reach the process; the port is announced',
  withTimeout(20_000, async () => {
    await withJob(
      spec({ script: 'echo "$FOO|$PORT_0|$PORT_1"', ports: 2 }),
      async (j) => {
        assert.is((await j.job.wait()).exitCode, 0);
        const [foo, p0, p1] = j.out().trim().split('|');
        assert.is(foo, 'bar baz');
        assert.match(p0 ?? '', /^\d+$/);
        assert.match(p1 ?? '', /^\d+$/);
        assert.is.not(p0, p1);
        const ports = j.h.notices.filter((n) => n.kind === 'port');
        assert.equal(ports, [
          { kind: 'port', containerPort: Number(p0), url: `http://127.0.0.1:${p0}` },
          { kind: 'port', containerPort: Number(p1), url: `http://127.0.0.1:${p1}` },
        ]);
      },
      { FOO: 'bar baz' },
    );
  }),
);

test(
  'the working dir is /workflow/<working_dir>',
  withTimeout(20_000, async () => {
    await withJob(spec({ script: 'pwd', workingDir: 'sub/dir' }), async (j) => {
      assert.is((await j.job.wait()).exitCode, 0);
      assert.is(j.out(), '/workflow/sub/dir\n');
    });
  }),
);

test(
  'artifacts the job writes are collected; a missing one is a notice',
  withTimeout(20_000, async () => {
    await withJob(spec({ script: 'mkdir -p out && echo result > out/a.txt' }), async (j) => {
      assert.is((await j.job.wait()).exitCode, 0);
      const store = new LocalArtifactStore({ home });
      const manifest = await j.machine.collect(
        j.h.ctx,
        [
          { path: 'out', mount: false },
          { path: 'nope', mount: false },
        ],
        store,
      );
      const file = manifest.entries.find((e) => e.path === 'out/a.txt');
      assert.ok(file && file.type === 'file', JSON.stringify(manifest));
      assert.is(await readFile(store.objects.path(file.hash), 'utf8'), 'result\n');
      assert.ok(j.h.notices.some((n) => n.kind === 'info' && n.message.includes("'nope'")));
    });
  }),
);

test(
  'stop() sends SIGTERM and the job ends through its trap',
  withTimeout(20_000, async () => {
    await withJob(spec({ script: "trap 'echo got-term; exit 7' TERM; echo ready; sleep 1000 & wait" }), async (j) => {
      await until('ready', 5000, () => j.out().includes('ready'));
      const t0 = Date.now();
      await j.job.stop(10);
      assert.ok(Date.now() - t0 < 9000, 'ended by the trap, not by the SIGKILL after the 10 s grace');
      assert.equal(await j.job.wait(), { exitCode: 7 });
      assert.ok(j.out().includes('got-term'));
    });
  }),
);

test(
  'kill() ends a job at once; observe sees running, exited, then gone',
  withTimeout(20_000, async () => {
    let handle: BackendHandle | undefined;
    await withJob(spec({ script: 'sleep 1000' }), async (j) => {
      handle = j.h.handles.at(-1);
      assert.ok(handle);
      assert.equal(await backend.observe(handle), { state: 'running' });
      await j.job.kill();
      assert.equal(await j.job.wait(), { exitCode: 137 });
      assert.equal(await backend.observe(handle), { state: 'exited', exitCode: 137 });
    });
    assert.ok(handle);
    assert.equal(await backend.observe(handle), { state: 'gone' });
  }),
);

test(
  'teardown twice is fine, and removes the container and the job folder',
  withTimeout(20_000, async () => {
    let machine: Machine | undefined;
    try {
      const j = await startJob(spec({ script: 'true' }), {}, (m) => (machine = m));
      await j.job.wait();
      const jobDir = String(j.h.handles.at(-1)?.jobDir);
      assert.ok(existsSync(join(jobDir, 'workflow', 'hello.txt')));
      await j.machine.teardown();
      await j.machine.teardown();
      assert.not.ok(existsSync(jobDir));
      assert.equal(await backend.observe(j.h.handles.at(-1) ?? {}), { state: 'gone' });
    } finally {
      await machine?.teardown();
    }
  }),
);

test(
  'reap removes what a recorded handle names, and is idempotent',
  withTimeout(20_000, async () => {
    let machine: Machine | undefined;
    try {
      const j = await startJob(spec({ script: 'sleep 1000' }), {}, (m) => (machine = m));
      const handle = j.h.handles.at(-1);
      assert.ok(handle);
      await backend.reap(handle);
      await backend.reap(handle);
      assert.equal(await backend.observe(handle), { state: 'gone' });
      assert.not.ok(existsSync(String(handle.jobDir)));
      // The job's wait() sees its container vanish.
      const exit = await j.job.wait();
      assert.is(exit.exitCode, 137);
      assert.ok(exit.reason, 'a reason is given');
    } finally {
      await machine?.teardown();
    }
  }),
);

test(
  'a container removed outside dstack ends wait() with a reason',
  withTimeout(20_000, async () => {
    await withJob(spec({ script: 'sleep 1000' }), async (j) => {
      await testDocker().removeContainer(j.container());
      const exit = await j.job.wait();
      assert.is(exit.exitCode, 137);
      assert.ok(exit.reason);
    });
  }),
);

test(
  'aborting the context kills the job',
  withTimeout(20_000, async () => {
    await withJob(spec({ script: 'sleep 1000' }), async (j) => {
      j.h.abort.abort();
      assert.is((await j.job.wait()).exitCode, 137);
    });
  }),
);

test(
  'a missing image that cannot be pulled is DS0201 naming the image',
  withTimeout(20_000, async () => {
    const h = harness(spec({ image: `${NOWHERE}/dstack-test/does-not-exist:1.0`, script: 'true' }));
    const machine = await backend.provision(h.ctx);
    try {
      const e = await rejectsWith(machine.bootstrap(h.ctx), 'DS0201');
      assert.match(e.message, `image '${NOWHERE}/dstack-test/does-not-exist:1.0' is not available locally and could not be pulled (offline: `);
      assert.match(e.hint ?? '', `docker pull ${NOWHERE}/dstack-test/does-not-exist:1.0`);
    } finally {
      await machine.teardown();
    }
  }),
);

test(
  'DOCKER_HOST at a dead socket: check() is DS0200 naming it',
  withTimeout(10_000, async () => {
    const before = process.env.DOCKER_HOST;
    const dead = join(home, 'no-docker.sock');
    process.env.DOCKER_HOST = `unix://${dead}`;
    const b = localPlugin.open({ home });
    try {
      const e = await rejectsWith(b.check(AbortSignal.timeout(5000)), 'DS0200');
      assert.is(e.message, `no Docker engine answers at unix://${dead}`);
      assert.match(e.hint ?? '', 'dockerd');
      assert.is(e.exitCode, 3);
    } finally {
      if (before === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = before;
      await b.close();
    }
    await backend.check(AbortSignal.timeout(5000));
  }),
);

test(
  'a GPU on an engine without the nvidia runtime is DS0202',
  withTimeout(10_000, async () => {
    const info = await testDocker().info();
    if (Object.keys(info.Runtimes ?? {}).includes('nvidia')) return; // nothing to prove on a GPU host
    const h = harness(spec({ script: 'true', resources: { gpu: { count: 1 } } }));
    const machine = await backend.provision(h.ctx);
    try {
      const e = await rejectsWith(machine.bootstrap(h.ctx), 'DS0202');
      assert.is(e.message, 'this Docker engine has no GPU support (no nvidia runtime)');
    } finally {
      await machine.teardown();
    }
  }),
);

test(
  'memory, cpu and shm_size become container limits',
  withTimeout(20_000, async () => {
    const resources = { memory: 64 * 1024 * 1024, cpu: 0.5, shmSize: 32 * 1024 * 1024 };
    await withJob(spec({ script: 'df -k /dev/shm | tail -1', resources }), async (j) => {
      assert.is((await j.job.wait()).exitCode, 0);
      const hc = (await testDocker().inspectContainer(j.container())).HostConfig;
      assert.is(hc.Memory, 64 * 1024 * 1024);
      assert.is(hc.NanoCpus, 500_000_000);
      assert.is(hc.ShmSize, 32 * 1024 * 1024);
      assert.match(j.out(), /\s32768\s/);
    });
  }),
);

test(
  'cache paths persist between runs of the same workflow',
  withTimeout(20_000, async () => {
    const s = spec({ workflow: 'cached', cache: ['~/.cache/x', 'data'], script: 'cat ~/.cache/x/n data/m 2>/dev/null; echo 1 > ~/.cache/x/n; echo 2 > data/m' });
    await withJob(s, async (j) => {
      assert.is((await j.job.wait()).exitCode, 0);
      assert.is(j.out(), '');
    });
    await withJob(s, async (j) => {
      assert.is((await j.job.wait()).exitCode, 0);
      assert.is(j.out(), '1\n2\n');
    });
  }),
);

test(
  'a published port is reachable from the host',
  withTimeout(20_000, async () => {
    const script = 'mkdir -p www && echo served > www/index.html && exec httpd -f -p "$PORT_0" -h www';
    await withJob(spec({ script, ports: 1 }), async (j) => {
      const port = j.h.notices.find((n) => n.kind === 'port');
      assert.ok(port && port.kind === 'port');
      let body = '';
      await until('the web server', 10_000, async () => {
        try {
          const res = await fetch(port.url, { signal: AbortSignal.timeout(1000) });
          body = await res.text();
          return res.ok;
        } catch {
          return false;
        }
      });
      assert.is(body, 'served\n');
      await j.job.kill();
    });
  }),
);

test(
  'imageDigest is the engine image id, and bootstrap after it does not inspect again',
  withTimeout(20_000, async () => {
    const b = localPlugin.open({ home, settings: { labels: { 'dstack.test': TEST_LABEL } } }) as LocalBackend;
    const client = b.client;
    const inspect = client.imageInspect.bind(client);
    let inspects = 0;
    client.imageInspect = (image, signal) => {
      inspects++;
      return inspect(image, signal);
    };
    const notices: BackendNotice[] = [];
    const options = { notify: (n: BackendNotice) => notices.push(n), signal: AbortSignal.timeout(10_000) };
    try {
      const digest = await b.imageDigest(spec(), options);
      const id = (await testDocker().imageInspect(BUSYBOX)) as { Id: string };
      assert.match(digest, /^sha256:[0-9a-f]{64}$/);
      assert.is(digest, id.Id);
      assert.is(inspects, 1);
      assert.is(await b.imageDigest(spec(), options), digest);
      const h = harness(spec({ script: 'true' }));
      const machine = await b.provision(h.ctx);
      try {
        await machine.bootstrap(h.ctx);
      } finally {
        await machine.teardown();
      }
      assert.is(inspects, 1, 'one inspect for imageDigest twice and a bootstrap');
      assert.equal(notices, [], 'no pull for an image that is there');

      // A missing image is DS0201, and the failure is not kept: the next call asks the engine again.
      const missing = spec({ image: `${NOWHERE}/dstack-test/does-not-exist:2.0` });
      const e = await rejectsWith(b.imageDigest(missing, options), 'DS0201');
      assert.match(e.message, `image '${NOWHERE}/dstack-test/does-not-exist:2.0' is not available locally and could not be pulled (`);
      const before = inspects;
      await rejectsWith(b.imageDigest(missing, options), 'DS0201');
      assert.ok(inspects > before);

      // pull: false (--dry-run) looks only; a pull asked for afterwards is still tried.
      assert.is(await b.imageDigest(spec(), { ...options, pull: false }), digest);
      const lookOnly = await rejectsWith(b.imageDigest(missing, { ...options, pull: false }), 'DS0201');
      assert.is(lookOnly.message, `image '${NOWHERE}/dstack-test/does-not-exist:2.0' is not available locally, and pulling it was not asked for`);
      const pulled = await rejectsWith(b.imageDigest(missing, options), 'DS0201');
      assert.match(pulled.message, 'could not be pulled');
    } finally {
      await b.close();
    }
  }),
);

test(
  'no container made by this file is left behind',
  withTimeout(10_000, () => assertNothingLeft(TEST_LABEL)),
);

test.run();

