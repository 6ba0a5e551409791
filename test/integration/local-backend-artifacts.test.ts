/**
 * The local backend's deps and artifacts against the real Docker engine: deps materialized into
 * /workflow as read-only hard links (copies across filesystems), `mount: true` artifacts live on the
 * host, collecting after a failed job. Every container carries `dstack.test=local-backend-artifacts`;
 * the last test proves none is left.
 */
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { testDocker } from '../helpers/docker.js';
import { busyboxSpec as spec } from '../helpers/job-harness.js';
import { withTimeout } from '../helpers/timeout.js';
import { until } from '../helpers/wait.js';
import { assertNothingLeft, backend, depManifest, home, harness, project, setUp, stageInput, tearDown, withJob } from '../helpers/local-backend.js';

const TEST_LABEL = 'local-backend-artifacts';

test.before(withTimeout(60_000, () => setUp(TEST_LABEL)));
test.after(withTimeout(60_000, () => tearDown(TEST_LABEL)));

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
  withTimeout(10_000, () => assertNothingLeft(TEST_LABEL)),
);

test.run();

