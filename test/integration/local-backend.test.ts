/**
 * The local backend against the real Docker engine, with the locally built busybox image.
 * Every container carries `dstack.test=local-backend`; the last test proves none is left.
 */
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import type { Backend, BackendHandle, BackendNotice, Machine, RunningJob } from '../../src/engine/backend.js';
import { DstackError } from '../../src/engine/errors.js';
import type { JobSpec } from '../../src/engine/types.js';
import { localPlugin, type LocalBackend } from '../../src/backends/local/index.js';
import type { Manifest } from '../../src/artifacts/types.js';
import { BUSYBOX, closeTestDocker, containersLabelled, ensureBusybox, sweepContainers, testDocker } from '../helpers/docker.js';
import { busyboxSpec as spec, jobHarness, type Harness } from '../helpers/job-harness.js';
import { NOWHERE } from '../helpers/registry.js';
import { withTimeout } from '../helpers/timeout.js';
import { until } from '../helpers/wait.js';

const TEST_LABEL = 'local-backend';
let home = '';
let project = '';
let backend: Backend;
let jobCounter = 0;
/** The code snapshot as the executor hands it over: a manifest of the project's files. */
let snap: Manifest;

test.before(withTimeout(60_000, async () => {
  await ensureBusybox();
  home = await mkdtemp(join(tmpdir(), 'dstack-local-home-'));
  project = await mkdtemp(join(tmpdir(), 'dstack-local-project-'));
  await writeFile(join(project, 'hello.txt'), 'hello from the snapshot\n');
  snap = (await new LocalArtifactStore({ home }).save(project, [{ path: 'hello.txt', mount: false }])).manifest;
  backend = localPlugin.open({ home, settings: { labels: { 'dstack.test': TEST_LABEL } } });
}));

test.after(withTimeout(60_000, async () => {
  await sweepContainers(`dstack.test=${TEST_LABEL}`);
  await backend.close();
  closeTestDocker();
  await rm(home, { recursive: true, force: true });
  await rm(project, { recursive: true, force: true });
}));

function harness(s: JobSpec): Harness {
  jobCounter += 1;
  return jobHarness(s, `test-run-${process.pid}-${jobCounter}`);
}

const stageInput = (store: LocalArtifactStore, deps: Manifest[] = []) => ({ snapshot: snap, repoRoot: project, deps, store });

interface Started {
  readonly h: Harness;
  readonly machine: Machine;
  readonly job: RunningJob;
  readonly out: () => string;
  readonly err: () => string;
  readonly container: () => string;
}

/** provision → bootstrap → stage → start; the caller tears down in `finally`. */
async function startJob(s: JobSpec, env: Record<string, string> = {}, onMachine?: (m: Machine) => void): Promise<Started> {
  const h = harness(s);
  const machine = await backend.provision(h.ctx);
  onMachine?.(machine);
  await machine.bootstrap(h.ctx);
  await machine.stage(h.ctx, stageInput(new LocalArtifactStore({ home })));
  const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  const job = await machine.start(h.ctx, env, (stream, chunk) => chunks[stream].push(chunk));
  return {
    h,
    machine,
    job,
    out: () => Buffer.concat(chunks.stdout).toString('utf8'),
    err: () => Buffer.concat(chunks.stderr).toString('utf8'),
    container: () => String(h.handles.at(-1)?.container),
  };
}

/** Runs `fn` with a started job and always tears it down. */
async function withJob(s: JobSpec, fn: (j: Started) => Promise<void>, env: Record<string, string> = {}): Promise<void> {
  let machine: Machine | undefined;
  try {
    const j = await startJob(s, env, (m) => (machine = m));
    await fn(j);
  } finally {
    await machine?.teardown();
  }
}


async function rejectsWith(p: Promise<unknown>, code: string): Promise<DstackError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, DstackError, String(e));
    assert.is((e as DstackError).code, code, (e as Error).message);
    return e as DstackError;
  }
  throw new Error(`expected ${code}, got success`);
}

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
  'the deps given to stage are materialized into /workflow',
  withTimeout(20_000, async () => {
    const store = new LocalArtifactStore({ home });
    const src = await mkdtemp(join(tmpdir(), 'dstack-dep-'));
    try {
      await mkdir(join(src, 'model'));
      await writeFile(join(src, 'model', 'w.bin'), 'weights');
      const { manifest } = await store.save(src, [{ path: 'model', mount: false }]);
      const s = spec({ script: 'cat model/w.bin' });
      const h = harness(s);
      const machine = await backend.provision(h.ctx);
      try {
        await machine.bootstrap(h.ctx);
        await machine.stage(h.ctx, stageInput(store, [manifest]));
        const out: Buffer[] = [];
        const job = await machine.start(h.ctx, {}, (_s, c) => out.push(c));
        assert.is((await job.wait()).exitCode, 0);
        assert.is(Buffer.concat(out).toString(), 'weights');
      } finally {
        await machine.teardown();
      }
    } finally {
      await rm(src, { recursive: true, force: true });
    }
  }),
);

/** Saves the files `files` (path → content; a `->` value makes a symlink, a trailing `/` a folder) as artifacts. */
async function depManifest(store: LocalArtifactStore, files: Record<string, string>, paths: string[], exec: string[] = []): Promise<Manifest> {
  const src = await mkdtemp(join(tmpdir(), 'dstack-dep-'));
  try {
    for (const [path, content] of Object.entries(files)) {
      const abs = join(src, path);
      if (path.endsWith('/')) {
        await mkdir(abs, { recursive: true });
        continue;
      }
      await mkdir(join(abs, '..'), { recursive: true });
      if (content.startsWith('->')) await symlink(content.slice(2), abs);
      else await writeFile(abs, content);
      if (exec.includes(path)) await chmod(abs, 0o755);
    }
    return (await store.save(src, paths.map((path) => ({ path, mount: false })))).manifest;
  } finally {
    await rm(src, { recursive: true, force: true });
  }
}

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
  'deps are hard links mounted read-only: same paths, no write gets through, the store is unchanged',
  withTimeout(30_000, async () => {
    const store = new LocalArtifactStore({ home });
    const first = await depManifest(
      store,
      {
        'model/w.bin': 'weights',
        'model/run.sh': '#!/bin/sh\necho ran\n',
        'model/latest': '->w.bin',
        'model/empty/': '',
        'data/a.txt': 'a-from-first',
        'notes.txt': 'first',
        'out/x.txt': 'x',
      },
      ['model', 'data', 'notes.txt', 'out/x.txt'],
      ['model/run.sh'],
    );
    // Nested under the first dep's `data`, and a later word on notes.txt.
    const second = await depManifest(store, { 'data/sub/b.txt': 'b-from-second', 'notes.txt': 'second' }, ['data/sub', 'notes.txt']);
    const weights = first.entries.find((e) => e.path === 'model/w.bin');
    assert.ok(weights && weights.type === 'file');
    const object = store.objects.path(weights.hash);

    const script = [
      'cat model/w.bin; echo " $(cat model/latest) $(cat data/a.txt) $(cat data/sub/b.txt) $(cat notes.txt) $(cat out/x.txt)"',
      './model/run.sh',
      'test -d model/empty && echo empty-dir-kept',
      'echo changed > model/w.bin || echo write-refused',
      'echo new > data/new.txt || echo add-refused',
      'rm -f model/w.bin || echo rm-refused',
      'echo mine > out/y.txt && echo own-file-beside-a-dep-file',
      'echo more >> hello.txt && echo snapshot-writable',
      'cat model/w.bin; echo',
    ].join('\n');
    const s = spec({ script, artifacts: [{ path: 'data', mount: false }, { path: 'out', mount: false }] });
    const h = harness(s);
    const machine = await backend.provision(h.ctx);
    try {
      await machine.bootstrap(h.ctx);
      await machine.stage(h.ctx, stageInput(store, [first, second]));
      const out = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
      const job = await machine.start(h.ctx, {}, (stream, c) => out[stream].push(c));
      assert.is((await job.wait()).exitCode, 0);
      const text = Buffer.concat(out.stdout).toString();
      const errors = Buffer.concat(out.stderr).toString();
      const lines = text.split('\n');
      assert.is(lines[0], 'weights weights a-from-first b-from-second second x', text);
      assert.is(lines[1], 'ran');
      assert.is(lines[2], 'empty-dir-kept');
      assert.match(errors, /can't create model\/w.bin: Read-only file system/);
      assert.ok(text.includes('write-refused'), text);
      assert.ok(text.includes('add-refused'), text);
      assert.ok(text.includes('rm-refused'), text);
      assert.ok(text.includes('own-file-beside-a-dep-file'), text);
      assert.ok(text.includes('snapshot-writable'), text);
      assert.is(lines.at(-2), 'weights');

      // The store's object is as it was.
      assert.is(await readFile(object, 'utf8'), 'weights');
      assert.is((await stat(object)).mode & 0o777, 0o444);

      // On the host: links to the object (same inode), a copy for the executable, the link kept.
      const jobDir = String(h.handles.at(-1)?.jobDir);
      const [linked, obj] = await Promise.all([stat(join(jobDir, 'deps', 'model', 'w.bin')), stat(object)]);
      if (linked.dev === obj.dev) assert.is(linked.ino, obj.ino, 'a hard link to the store object');
      const runSh = await stat(join(jobDir, 'deps', 'model', 'run.sh'));
      assert.is(runSh.mode & 0o777, 0o755);
      assert.is(await readlink(join(jobDir, 'deps', 'model', 'latest')), 'w.bin');
      assert.ok((await lstat(join(jobDir, 'deps', 'model', 'empty'))).isDirectory());

      // One read-only mount per top-level path; data/sub rides inside data.
      const info = await testDocker().inspectContainer(String(h.handles.at(-1)?.container));
      const depMounts = info.Mounts.filter((m) => m.Destination.startsWith('/workflow/'))
        .map((m) => [m.Destination, m.RW] as const)
        .sort();
      assert.equal(depMounts, [
        ['/workflow/data', false],
        ['/workflow/model', false],
        ['/workflow/notes.txt', false],
        ['/workflow/out/x.txt', false],
      ]);

      // An artifact that names a dep's path is read from the deps, not from its empty mount point.
      const saved = await machine.collect(h.ctx, s.artifacts, store);
      const paths = saved.entries.map((e) => `${e.type}:${e.path}`);
      assert.equal(paths, ['dir:data', 'file:data/a.txt', 'dir:data/sub', 'file:data/sub/b.txt', 'dir:out', 'file:out/x.txt', 'file:out/y.txt']);
      const b = saved.entries.find((e) => e.path === 'data/sub/b.txt');
      assert.ok(b && b.type === 'file');
      assert.is(await readFile(store.objects.path(b.hash), 'utf8'), 'b-from-second');
    } finally {
      await machine.teardown();
    }
    assert.is(await readFile(object, 'utf8'), 'weights', 'teardown removes links, not objects');
  }),
);

test(
  'a store on another filesystem (EXDEV): the deps are copies, still read-only',
  withTimeout(20_000, async () => {
    // No early return: a machine where /dev/shm shares the home's filesystem cannot show this, and must say so.
    assert.ok(existsSync('/dev/shm') && (await stat('/dev/shm')).dev !== (await stat(home)).dev, 'this test needs /dev/shm on a filesystem of its own (tmpfs), to force EXDEV');
    const otherHome = await mkdtemp(join('/dev/shm', 'dstack-store-'));
    try {
      const store = new LocalArtifactStore({ home: otherHome });
      await store.save(project, [{ path: 'hello.txt', mount: false }]); // the snapshot's objects
      const dep = await depManifest(store, { 'model/w.bin': 'weights' }, ['model']);
      const h = harness(spec({ script: 'cat model/w.bin; echo x > model/w.bin || echo write-refused' }));
      const machine = await backend.provision(h.ctx);
      try {
        await machine.bootstrap(h.ctx);
        await machine.stage(h.ctx, stageInput(store, [dep]));
        const out: Buffer[] = [];
        const job = await machine.start(h.ctx, {}, (stream, c) => stream === 'stdout' && out.push(c));
        assert.is((await job.wait()).exitCode, 0);
        assert.is(Buffer.concat(out).toString(), 'weightswrite-refused\n');
        const jobDir = String(h.handles.at(-1)?.jobDir);
        const copy = await stat(join(jobDir, 'deps', 'model', 'w.bin'));
        assert.is(copy.mode & 0o777, 0o644);
      } finally {
        await machine.teardown();
      }
    } finally {
      await rm(otherHome, { recursive: true, force: true });
    }
  }),
);

test(
  'a mount: true artifact is announced once with its live host path, and fills while the job runs',
  withTimeout(20_000, async () => {
    const s = spec({
      script: 'mkdir -p output && echo step-1 > output/progress && sleep 1000',
      artifacts: [
        { path: 'output', mount: true },
        { path: 'model', mount: false },
      ],
    });
    await withJob(s, async (j) => {
      const jobDir = String(j.h.handles.at(-1)?.jobDir);
      const live = join(jobDir, 'workflow', 'output');
      const infos = j.h.notices.filter((n) => n.kind === 'info');
      assert.equal(infos, [{ kind: 'info', message: `artifact ./output is live at ${live}` }]);
      await until('the live file', 10_000, async () => (await readFile(join(live, 'progress'), 'utf8').catch(() => '')) === 'step-1\n');
      await j.job.kill();
    });
  }),
);

test(
  'collect works after a failed job, and for a job that never started',
  withTimeout(20_000, async () => {
    const store = new LocalArtifactStore({ home });
    await withJob(spec({ script: 'mkdir -p out && echo partial > out/p.txt && exit 2' }), async (j) => {
      assert.is((await j.job.wait()).exitCode, 2);
      const m = await j.machine.collect(j.h.ctx, [{ path: 'out', mount: true }], store);
      assert.equal(
        m.entries.map((e) => e.path),
        ['out', 'out/p.txt'],
      );
    });
    const h = harness(spec({ script: 'true' }));
    const machine = await backend.provision(h.ctx);
    try {
      const m = await machine.collect(h.ctx, [{ path: 'out', mount: true }], store);
      assert.equal(m.entries, []);
      assert.ok(h.notices.some((n) => n.kind === 'info' && n.message.includes("'out'")));
    } finally {
      await machine.teardown();
    }
  }),
);

test(
  'no container made by this file is left behind',
  withTimeout(10_000, async () => {
    const left = await containersLabelled(`dstack.test=${TEST_LABEL}`);
    assert.equal(left, [], `leaked: ${left.map((c) => c.id.slice(0, 12)).join(', ')}`);
    const byHome = await containersLabelled(`dstack.home=${home}`);
    assert.equal(byHome, []);
  }),
);

test.run();
