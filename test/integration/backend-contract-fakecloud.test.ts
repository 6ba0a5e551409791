/**
 * The backend contract (test/integration/backend-contract.ts) against a cloud: the fake cloud of
 * test/helpers/fake-cloud.ts, opened through its plugin as a real cloud's would be. Every job gets
 * an instance of its own — an SSH host container that ran the launch's boot script (host key,
 * dead-man switch) — reached with dstack's own key and the pinned host key; its job containers
 * carry `dstack.test=backend-contract-fakecloud`. Its machine is lost by preemption: the job ends
 * interrupted. Leftovers: those containers, and instances not terminated.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { closeTestDocker, containersLabelled, ensureBusybox, sweepContainers } from '../helpers/docker.js';
import { fakeCloudPlugin, fakeClouds } from '../helpers/fake-cloud.js';
import { sweepHosts } from '../helpers/ssh-hosts.js';
import { registerBackendContract } from './backend-contract.js';

const LABEL = 'dstack.test=backend-contract-fakecloud';

registerBackendContract('fakecloud', async () => {
  await ensureBusybox();
  const home = await mkdtemp(join(tmpdir(), 'dstack-contract-fakecloud-'));
  const backend = fakeCloudPlugin.open({
    home,
    remote: { name: 'contract', kind: 'fakecloud', region: 'test-1', maxCpu: 4 },
    settings: { labels: { 'dstack.test': 'backend-contract-fakecloud' }, sshWaitSeconds: 60 },
  });
  const cloud = fakeClouds.get(backend.id)!;
  return {
    backend,
    store: new LocalArtifactStore({ home }),
    timeoutMs: 90_000,
    unsupported: [
      { spec: { resources: { gpu: { count: 1 } } }, reason: /^fakecloud offers no GPU instances in test-1: ask for gpu: 0$/ },
      { spec: { resources: { cpu: 8 } }, reason: /^no fakecloud instance type has 8 CPUs \(at most 4 in test-1\)$/ },
    ],
    loseMachine: async (handle) => {
      await cloud.preempt(handle);
      return { status: 'interrupted', reason: /^the instance root@127\.0\.0\.1:\d+ was preempted: the cloud took the spot instance back$/ };
    },
    leftovers: async () => [
      ...(await containersLabelled(LABEL)).map((c) => `container ${c.id.slice(0, 12)}`),
      ...(await cloud.list()).filter((i) => i.state !== 'terminated').map((i) => `instance ${String(i.handle.instance)} (${i.state})`),
    ],
    cleanup: async () => {
      for (const i of await cloud.list()) await cloud.terminate(i.handle);
      await sweepContainers(LABEL);
      await backend.close();
      await sweepHosts();
      closeTestDocker();
      await rm(home, { recursive: true, force: true });
    },
  };
});
