/**
 * What the generic instance backend (src/backends/ssh-host/instance-backend.ts) adds to the remote
 * machine, on the fake cloud (test/helpers/fake-cloud.ts), beyond the backend contract: the host
 * key is pinned (an instance showing another key is never trusted, and is terminated), the dead-man
 * switch ends an instance nobody renews while the heartbeat keeps one alive, a recorded handle is
 * observed and reaped by a backend that never saw the instance, and the client key is one per home.
 */
import { stat } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { connectHost } from '../../src/backends/ssh-host/connect.js';
import { bootScript, Heartbeat } from '../../src/backends/ssh-host/deadman.js';
import { publicKeyBlob } from '../../src/backends/ssh-host/host-keys.js';
import type { InstanceLaunch } from '../../src/backends/ssh-host/instance.js';
import { clientKey, clientKeyPath, newHostKey } from '../../src/backends/ssh-host/instance-keys.js';
import type { BackendHandle, JobContext } from '../../src/engine/backend.js';
import { DstackError } from '../../src/engine/errors.js';
import { closeTestDocker, ensureBusybox, sweepContainers } from '../helpers/docker.js';
import { FakeCloud, fakeCloudPlugin, fakeClouds, type FakeCloudRemote } from '../helpers/fake-cloud.js';
import { busyboxSpec, jobHarness } from '../helpers/job-harness.js';
import { sweepHosts } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';
import { until } from '../helpers/wait.js';

const test = suite('instance backend');
const LABEL = 'dstack.test=instance-backend';
const REMOTE: FakeCloudRemote = { name: 'inst', kind: 'fakecloud', region: 'test-1' };
let home = '';
let jobs = 0;

test.before(
  withTimeout(30_000, async () => {
    await ensureBusybox();
    home = await mkdtemp(join(tmpdir(), 'dstack-instance-'));
  }),
);

test.after(
  withTimeout(60_000, async () => {
    for (const cloud of fakeClouds.values()) for (const i of await cloud.list()) await cloud.terminate(i.handle);
    await sweepContainers(LABEL);
    closeTestDocker();
    await rm(home, { recursive: true, force: true });
  }),
);

const open = (settings: Record<string, unknown> = {}) => fakeCloudPlugin.open({ home, remote: REMOTE, settings: { labels: { 'dstack.test': 'instance-backend' }, ...settings } });
const harness = (script: string) => jobHarness(busyboxSpec({ script }), `inst-${process.pid}-${++jobs}`);

/** A launch straight through the provider, as the generic backend would make it, with the switch's own times. */
async function launch(cloud: FakeCloud, deadMan: { ttlSeconds: number; graceSeconds: number }): Promise<{ handle: BackendHandle; boot: InstanceLaunch }> {
  const [client, hostKey] = await Promise.all([clientKey(home), newHostKey()]);
  const boot = { authorizedKey: client.publicKey, hostKey, bootScript: bootScript({ hostKey, deadMan: { ...deadMan, checkEverySeconds: 1 } }) };
  const h = harness('true');
  const handle = await cloud.launch(h.ctx, boot);
  return { handle: { ...handle, hostKey: hostKey.publicKey }, boot };
}

test(
  'an instance that shows another host key than the one dstack made is refused (DS0207 → DS0215) and terminated',
  withTimeout(60_000, async () => {
    const backend = open({ sshWaitSeconds: 4 });
    const cloud = fakeClouds.get(backend.id)!;
    // A cloud that installs a host key of its own instead of the one it was given.
    const launchOther = cloud.launch.bind(cloud);
    cloud.launch = async (ctx: JobContext, boot: InstanceLaunch) => {
      const other = await newHostKey();
      return launchOther(ctx, { ...boot, bootScript: bootScript({ hostKey: other, deadMan: { ttlSeconds: 60, graceSeconds: 60 } }) });
    };
    const h = harness('true');
    try {
      const e = await backend.provision(h.ctx).then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.instance(e, DstackError);
      assert.is((e as DstackError).code, 'DS0215');
      assert.match((e as DstackError).message, /did not answer over SSH within 4 s: root@127\.0\.0\.1:\d+ shows the host key ssh-ed25519 SHA256:\S+, not the ssh-ed25519 SHA256:\S+ dstack made for it$/);
      const handle = h.handles[0]!;
      assert.is(await cloud.state(handle), 'gone', 'the instance was terminated');
    } finally {
      cloud.launch = launchOther;
      await backend.close();
    }
  }),
);

test(
  'the dead-man switch ends an instance nobody renews; the heartbeat keeps one alive until released',
  withTimeout(90_000, async () => {
    const backend = open();
    const cloud = fakeClouds.get(backend.id)!;
    try {
      const orphan = await launch(cloud, { ttlSeconds: 2, graceSeconds: 3 });
      const kept = await launch(cloud, { ttlSeconds: 2, graceSeconds: 3 });
      const client = await clientKey(home);
      const target = await cloud.address(kept.handle, AbortSignal.timeout(30_000));
      const conn = await connectHost(target, { identity: client.path, hostKey: publicKeyBlob(kept.boot.hostKey.publicKey), timeoutMs: 20_000 });
      const heartbeat = new Heartbeat(conn, 500);
      try {
        await until('the unrenewed instance to shut itself down', 30_000, async () => (await cloud.state(orphan.handle)) === 'terminated', 250);
        assert.is(await cloud.state(kept.handle), 'running', 'renewed: still running when the other, launched with it, is gone');
        await heartbeat.release();
        await until('the released instance to shut itself down', 30_000, async () => (await cloud.state(kept.handle)) === 'terminated', 250);
      } finally {
        await heartbeat.release();
        await conn.close();
        await cloud.terminate(orphan.handle);
        await cloud.terminate(kept.handle);
      }
    } finally {
      await backend.close();
    }
  }),
);

test(
  'a recorded handle is observed and reaped by a backend that never saw the instance (another dstack)',
  withTimeout(90_000, async () => {
    const first = open();
    const h = harness('echo started; sleep 1000');
    const machine = await first.provision(h.ctx);
    const later = open();
    try {
      await machine.bootstrap(h.ctx);
      const store = new LocalArtifactStore({ home });
      await machine.stage(h.ctx, { snapshot: { version: 1, entries: [], size: 0 }, repoRoot: home, deps: [], store });
      const out: string[] = [];
      await machine.start(h.ctx, {}, (_s, c) => out.push(c.toString()));
      await until('the job to start', 30_000, () => out.join('').includes('started'));
      const handle = h.handles.at(-1)!;
      assert.ok(typeof handle.instance === 'string' && typeof handle.hostKey === 'string' && typeof handle.container === 'string', JSON.stringify(handle));
      assert.equal(await later.observe(handle), { state: 'running' });
      await later.reap(handle);
      assert.equal(await later.observe(handle), { state: 'gone' });
      assert.is(await fakeClouds.get(later.id)!.state(handle), 'gone');
    } finally {
      await machine.teardown();
      await first.close();
      await later.close();
    }
  }),
);

test(
  'one client key per home, mode 0600, the same for every caller',
  withTimeout(10_000, async () => {
    const [a, b] = await Promise.all([clientKey(home), clientKey(home)]);
    assert.equal(a, b);
    assert.is(a.path, clientKeyPath(home));
    assert.is((await stat(a.path)).mode & 0o777, 0o600);
    assert.match(a.publicKey, /^ssh-ed25519 AAAA\S+ dstack$/);
  }),
);

test(
  'nothing is left behind',
  withTimeout(30_000, async () => {
    for (const cloud of fakeClouds.values()) assert.equal((await cloud.list()).filter((i) => i.state !== 'terminated'), []);
    assert.is(await sweepContainers(LABEL), 0, 'job containers leaked');
    assert.is(await sweepHosts(), 0, 'instances leaked');
  }),
);

test.run();
