/**
 * The backend contract suite (src/engine/backend.ts): one set of tests that every backend must pass,
 * driven through the Backend / Machine / RunningJob interfaces only, registered once per
 * implementation (the shape of wireit's src/test/cache-common.ts):
 *
 *   // test/integration/backend-contract-<name>.test.ts
 *   registerBackendContract('local', async () => ({ backend, store, cleanup, leftovers }));
 *
 * `registerBackendContract` makes a uvu suite named `backend contract: <name>`, calls the factory
 * once before its tests and `cleanup` once after them, and runs it. The jobs run the locally built
 * busybox image (or `image`). `leftovers` lists what the backend's jobs left behind (containers,
 * job folders on a host, instances); the last test asserts it is empty after every teardown.
 *
 * The lifecycle cases drive the real executor (src/engine/executor.ts) against the backend, with a
 * run store of their own: a provision that fails right after recording its handle (the fault is
 * injected at the seam: the recording itself throws once it has recorded) is reaped; a machine lost
 * mid-job (`loseMachine`: a preempted fake-cloud instance, a killed pool host, a container removed
 * behind local's back) ends the job with its cause — `interrupted` when preempted, `failed` otherwise.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { ArtifactStore, Manifest } from '../../src/artifacts/types.js';
import type { Backend, BackendHandle, BackendNotice, ExitInfo, Machine, RunningJob } from '../../src/engine/backend.js';
import { DstackError } from '../../src/engine/errors.js';
import type { JobSpec } from '../../src/engine/types.js';
import { BUSYBOX } from '../helpers/docker.js';
import { jobHarness, type Harness as JobHarness } from '../helpers/job-harness.js';
import { jobSpec, shellCommand } from '../helpers/spec.js';
import { withTimeout } from '../helpers/timeout.js';
import { until } from '../helpers/wait.js';
import { registerLifecycleCases } from './backend-lifecycle.js';

export interface ContractSubject {
  readonly backend: Backend;
  /** Where snapshots, deps and collected artifacts live: a LocalArtifactStore in a temporary home. */
  readonly store: ArtifactStore;
  /** Called once after the suite's tests: closes the backend, removes what the factory made. */
  readonly cleanup: () => Promise<void>;
  /** What this backend's jobs left behind (container ids, folders), for the leak check; [] when none. */
  readonly leftovers?: () => Promise<readonly string[]>;
  /** The image the jobs run; default the locally built busybox. */
  readonly image?: string;
  /** Per-test time limit in ms; default 60 s. */
  readonly timeoutMs?: number;
  /**
   * What the backend refuses, each with the reason it must give (`supports`); every other variant
   * of the supports test must be supported. Empty: it supports them all.
   */
  readonly unsupported: readonly { readonly spec: Partial<JobSpec>; readonly reason: RegExp }[];
  /**
   * Takes the machine of a running job away, as the world would: what the job must end as, with
   * what reason, and how to bring the world back afterwards (a pool host restarted).
   */
  readonly loseMachine: (handle: BackendHandle) => Promise<MachineLossCase>;
}

export interface MachineLossCase {
  readonly status: 'interrupted' | 'failed';
  readonly reason: RegExp;
  readonly restore?: () => Promise<void>;
}

export type ContractFactory = () => Promise<ContractSubject>;

interface Harness extends JobHarness {
  readonly out: () => string;
  readonly err: () => string;
  readonly sink: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
}

let jobs = 0;


/** Registers the contract tests for one backend and runs them. */
export function registerBackendContract(name: string, factory: ContractFactory): void {
  const test = suite(`backend contract: ${name}`);
  let subject: ContractSubject | undefined;
  let project = '';
  let snapshot: Manifest;
  let dep: Manifest;
  const made: Machine[] = [];

  const s = (): ContractSubject => {
    if (!subject) throw new Error('the factory has not run');
    return subject;
  };
  const limit = (fn: () => Promise<void>) => async () => withTimeout(s().timeoutMs ?? 60_000, fn)();

  test.before(withTimeout(60_000, async () => {
    subject = await factory();
    project = await mkdtemp(join(tmpdir(), 'dstack-contract-project-'));
    await writeFile(join(project, 'hello.txt'), 'hello from the snapshot\n');
    await mkdir(join(project, 'src'));
    await writeFile(join(project, 'src', 'main.sh'), 'echo from-main\n');
    snapshot = (await subject.store.save(project, [{ path: 'hello.txt', mount: false }, { path: 'src', mount: false }])).manifest;
    const depDir = await mkdtemp(join(tmpdir(), 'dstack-contract-dep-'));
    try {
      await mkdir(join(depDir, 'model'));
      await writeFile(join(depDir, 'model', 'w.bin'), 'weights');
      dep = (await subject.store.save(depDir, [{ path: 'model', mount: false }])).manifest;
    } finally {
      await rm(depDir, { recursive: true, force: true });
    }
  }));

  test.after(withTimeout(60_000, async () => {
    // Machines a failing test could not tear down.
    for (const m of made) await m.teardown().catch(() => undefined);
    await rm(project, { recursive: true, force: true });
    await subject?.cleanup();
  }));

  function spec(script: string | undefined, overrides: Partial<JobSpec> = {}): JobSpec {
    return jobSpec({ workflow: 'contract', image: s().image ?? BUSYBOX, command: shellCommand(script), ...overrides });
  }

  function harness(js: JobSpec): Harness {
    const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    jobs += 1;
    return {
      ...jobHarness(js, `contract-${process.pid}-${jobs}`),
      out: () => Buffer.concat(chunks.stdout).toString('utf8'),
      err: () => Buffer.concat(chunks.stderr).toString('utf8'),
      sink: (stream, chunk) => chunks[stream].push(chunk),
    };
  }

  /** provision → bootstrap → stage (the snapshot, and `deps`). */
  async function ready(h: Harness, deps: readonly Manifest[] = []): Promise<Machine> {
    const machine = await s().backend.provision(h.ctx);
    made.push(machine);
    await machine.bootstrap(h.ctx);
    await machine.stage(h.ctx, { snapshot, repoRoot: project, deps, store: s().store });
    return machine;
  }

  async function teardown(machine: Machine): Promise<void> {
    await machine.teardown();
    made.splice(made.indexOf(machine), 1);
  }

  const lastHandle = (h: Harness): BackendHandle => {
    const handle = h.handles.at(-1);
    assert.ok(handle, 'a handle was recorded');
    return handle;
  };

  test(
    'supports: a plain job is supported; what is not comes with a reason a person can act on',
    limit(async () => {
      const { backend, unsupported } = s();
      assert.equal(backend.supports(spec('true')), { ok: true });
      const variants: Partial<JobSpec>[] = [
        { resources: { gpu: { count: 1 } } },
        { ports: 2 },
        { resources: { memory: 64 * 1024 * 1024, cpu: 0.5 } },
        { cache: ['~/.cache/x'] },
        ...unsupported.map((u) => u.spec),
      ];
      for (const v of variants) {
        const refusal = unsupported.find((u) => u.spec === v || JSON.stringify(u.spec) === JSON.stringify(v));
        const got = backend.supports(spec('true', v));
        if (refusal) {
          assert.is(got.ok, false, `refuses ${JSON.stringify(v)}`);
          assert.match(got.ok ? '' : got.reason, refusal.reason);
        } else {
          assert.equal(got, { ok: true }, `supports ${JSON.stringify(v)}`);
        }
      }
      assert.type(backend.id, 'string');
      assert.ok(backend.id.length > 0);
    }),
  );

  test(
    'check succeeds',
    limit(async () => {
      await s().backend.check(AbortSignal.timeout(30_000));
    }),
  );

  test(
    'imageDigest: a stable content id for the image',
    limit(async () => {
      const notices: BackendNotice[] = [];
      const options = { notify: (n: BackendNotice) => notices.push(n), signal: AbortSignal.timeout(30_000) };
      const first = await s().backend.imageDigest(spec('true'), options);
      assert.match(first, /^sha256:[0-9a-f]{64}$/);
      assert.is(await s().backend.imageDigest(spec('true'), options), first);
      assert.is(await s().backend.imageDigest(spec('true'), { ...options, pull: false }), first);
    }),
  );

  test(
    'a full job: stage the snapshot and a dep, logs and env, exit code, artifacts collected, teardown',
    limit(async () => {
      const script = [
        'echo "foo=$FOO"',
        'echo "tricky=$TRICKY"',
        'cat hello.txt',
        'sh src/main.sh',
        'cat model/w.bin; echo',
        'echo err-line >&2',
        'mkdir -p out/sub && echo result > out/a.txt && printf b > out/sub/b.txt',
      ].join('\n');
      const js = spec(script, { artifacts: [{ path: 'out', mount: false }] });
      const h = harness(js);
      const machine = await ready(h, [dep]);
      const env = { FOO: 'bar baz', TRICKY: `it's "quoted" $HOME \\ \`x\`` };
      const job = await machine.start(h.ctx, env, h.sink);
      const exit = await job.wait();
      assert.is(exit.exitCode, 0, h.err());
      assert.not.ok(exit.lost);
      assert.equal(h.out().split('\n'), ['foo=bar baz', `tricky=${env.TRICKY}`, 'hello from the snapshot', 'from-main', 'weights', '']);
      assert.is(h.err(), 'err-line\n');
      // The same wait, asked again.
      assert.equal(await job.wait(), exit);

      const store = s().store;
      const manifest = await machine.collect(h.ctx, js.artifacts, store);
      assert.equal(
        manifest.entries.map((e) => `${e.type}:${e.path}${e.type === 'file' ? `:${e.size}` : ''}`),
        ['dir:out', 'file:out/a.txt:7', 'dir:out/sub', 'file:out/sub/b.txt:1'],
      );
      const contents: Record<string, string> = {};
      for (const e of manifest.entries) if (e.type === 'file') contents[e.path] = (await buffer(store.objects.get(e.hash))).toString('utf8');
      assert.equal(contents, { 'out/a.txt': 'result\n', 'out/sub/b.txt': 'b' });

      const handle = lastHandle(h);
      await teardown(machine);
      await machine.teardown();
      assert.equal(await s().backend.observe(handle), { state: 'gone' });
    }),
  );

  test(
    'a job that exits non-zero reports its code',
    limit(async () => {
      const h = harness(spec('echo failing; exit 3'));
      const machine = await ready(h);
      try {
        const job = await machine.start(h.ctx, {}, h.sink);
        const exit = await job.wait();
        assert.is(exit.exitCode, 3);
        assert.not.ok(exit.lost);
        assert.is(h.out(), 'failing\n');
      } finally {
        await teardown(machine);
      }
    }),
  );

  test(
    'observe: gone before start, running while it runs (logs arrive live), exited after, gone after teardown; reap is idempotent',
    limit(async () => {
      const h = harness(spec('echo started; sleep 1000'));
      const machine = await ready(h);
      const { backend } = s();
      let job: RunningJob | undefined;
      try {
        if (h.handles.length) assert.equal(await backend.observe(lastHandle(h)), { state: 'gone' }, 'nothing runs a job that has not started');
        job = await machine.start(h.ctx, {}, h.sink);
        await until('the first line of the log', 20_000, () => h.out().includes('started\n'));
        const handle = lastHandle(h);
        assert.equal(await backend.observe(handle), { state: 'running' });
        await job.kill();
        const exit = await job.wait();
        assert.is.not(exit.exitCode, 0);
        const after = await backend.observe(handle);
        assert.is(after.state, 'exited');
        assert.is(after.state === 'exited' && after.exitCode, exit.exitCode);
        await backend.reap(handle);
        assert.equal(await backend.observe(handle), { state: 'gone' });
        await backend.reap(handle);
        await teardown(machine);
        assert.equal(await backend.observe(handle), { state: 'gone' });
        await backend.reap(handle);
      } finally {
        await job?.kill().catch(() => undefined);
        await machine.teardown();
      }
    }),
  );

  test(
    'stop: SIGTERM reaches the job, which ends through its trap',
    limit(async () => {
      const h = harness(spec("trap 'echo got-term; exit 7' TERM; echo ready; sleep 1000 & wait"));
      const machine = await ready(h);
      try {
        const job = await machine.start(h.ctx, {}, h.sink);
        await until('ready', 20_000, () => h.out().includes('ready'));
        const t0 = Date.now();
        await job.stop(20);
        assert.ok(Date.now() - t0 < 15_000, 'ended by the trap, not by the SIGKILL after the grace');
        assert.is((await job.wait()).exitCode, 7);
        await until('the last line of the log', 5000, () => h.out().includes('got-term'));
      } finally {
        await teardown(machine);
      }
    }),
  );

  test(
    'stop: a plain shell job with no trap ends on SIGTERM (it runs under an init), not by SIGKILL after the grace',
    limit(async () => {
      const h = harness(spec('echo ready; sleep 1000'));
      const machine = await ready(h);
      try {
        const job = await machine.start(h.ctx, {}, h.sink);
        await until('ready', 20_000, () => h.out().includes('ready'));
        // A shell that is PID 1 drops SIGTERM: it would be killed after 30 s, with 137.
        await job.stop(30);
        assert.is((await job.wait()).exitCode, 143);
      } finally {
        await teardown(machine);
      }
    }),
  );

  test(
    'artifact folders are there before the job: `echo hi > output/hello.txt` with artifacts [output] works',
    limit(async () => {
      const js = spec('echo hi > output/hello.txt && echo x > out/x.txt', {
        artifacts: [
          { path: 'output', mount: false },
          { path: 'out/x.txt', mount: false },
        ],
      });
      const h = harness(js);
      const machine = await ready(h);
      try {
        const job = await machine.start(h.ctx, {}, h.sink);
        assert.is((await job.wait()).exitCode, 0, h.err());
        const manifest = await machine.collect(h.ctx, js.artifacts, s().store);
        assert.equal(
          manifest.entries.filter((e) => e.type === 'file').map((e) => e.path),
          ['out/x.txt', 'output/hello.txt'],
        );
      } finally {
        await teardown(machine);
      }
    }),
  );

  test(
    'abort: the job ends promptly, teardown leaves nothing',
    limit(async () => {
      const h = harness(spec('echo started; sleep 1000'));
      const machine = await ready(h);
      try {
        const job = await machine.start(h.ctx, {}, h.sink);
        await until('the first line of the log', 20_000, () => h.out().includes('started'));
        const t0 = Date.now();
        h.abort.abort();
        const exit: ExitInfo = await job.wait();
        assert.ok(Date.now() - t0 < 15_000, `ended ${Date.now() - t0} ms after the abort`);
        assert.is.not(exit.exitCode, 0);
      } finally {
        await teardown(machine);
      }
      await machine.teardown();
      assert.equal(await s().backend.observe(lastHandle(h)), { state: 'gone' });
    }),
  );

  test(
    'a start that fails (no such program): teardown still runs, twice, and leaves nothing',
    limit(async () => {
      const js = spec(undefined, { command: ['/no/such/program'] });
      const h = harness(js);
      const machine = await ready(h);
      try {
        let failed = false;
        try {
          const job = await machine.start(h.ctx, {}, h.sink);
          failed = (await job.wait()).exitCode !== 0;
        } catch (e) {
          assert.instance(e, Error);
          failed = true;
        }
        assert.ok(failed, 'a program that does not exist does not succeed');
      } finally {
        await teardown(machine);
      }
      await machine.teardown();
      if (h.handles.length) assert.equal(await s().backend.observe(lastHandle(h)), { state: 'gone' });
    }),
  );

  test(
    'teardown right after provision (nothing staged), and after an abort before start',
    limit(async () => {
      const h = harness(spec('true'));
      const machine = await s().backend.provision(h.ctx);
      await machine.teardown();
      await machine.teardown();

      const h2 = harness(spec('echo never'));
      const m2 = await ready(h2);
      try {
        h2.abort.abort();
        let started: RunningJob | undefined;
        try {
          started = await m2.start(h2.ctx, {}, h2.sink);
          await started.wait();
        } catch {
          // an aborted start may refuse at once
        }
      } finally {
        await teardown(m2);
      }
      await m2.teardown();
      if (h2.handles.length) assert.equal(await s().backend.observe(lastHandle(h2)), { state: 'gone' });
      assert.not.ok(h2.out().includes('never'), 'an aborted job must not run to completion');
    }),
  );

  test(
    'the image is pinned: a machine told another digest than its image\'s refuses to run the job (DS0214)',
    limit(async () => {
      const h = harness(spec('echo never'));
      const ctx = { ...h.ctx, imageDigest: `sha256:${'0'.repeat(64)}` };
      const machine = await s().backend.provision(ctx);
      made.push(machine);
      try {
        const e = await machine.bootstrap(ctx).then(
          () => undefined,
          (err: unknown) => err,
        );
        assert.instance(e, DstackError);
        assert.is((e as DstackError).code, 'DS0214');
        assert.match((e as DstackError).message, /not 000000000000, the one the job's fingerprint was computed with/);
      } finally {
        await teardown(machine);
      }
    }),
  );

  registerLifecycleCases(test, { subject: s, limit, spec, snapshot: () => snapshot, project: () => project });

  test(
    'nothing is left behind',
    limit(async () => {
      assert.equal(made, [], 'every machine was torn down');
      const left = (await s().leftovers?.()) ?? [];
      assert.equal(left, [], `leaked: ${left.join(', ')}`);
    }),
  );

  test.run();
}
