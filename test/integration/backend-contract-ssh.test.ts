/**
 * The backend contract (test/integration/backend-contract.ts) against the SSH pool: two real
 * OpenSSH hosts (test/helpers/ssh-hosts.ts) whose job containers run on this machine's engine, each
 * carrying `dstack.test=backend-contract-ssh`. Leftovers: those containers, and job folders under
 * either host's `$HOME/.dstack/jobs`. Its machine is lost when the host is killed (a pool machine
 * is never preempted): the job fails; the host is restarted afterwards, the same machine again.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import type { SshRemote } from '../../src/backends/ssh/remote.js';
import { sshPlugin } from '../../src/backends/ssh/index.js';
import { closeTestDocker, containersLabelled, ensureBusybox, sweepContainers } from '../helpers/docker.js';
import * as assert from 'uvu/assert';
import { clientKey, killHost, removeHost, restartHost, startHost, sweepHosts } from '../helpers/ssh-hosts.js';
import { registerBackendContract } from './backend-contract.js';

const LABEL = 'dstack.test=backend-contract-ssh';

registerBackendContract('ssh', async () => {
  await ensureBusybox();
  const home = await mkdtemp(join(tmpdir(), 'dstack-contract-ssh-'));
  const hosts = await Promise.all([startHost(), startHost()]);
  const key = await clientKey();
  const remote: SshRemote = { name: 'contract', kind: 'ssh', hosts: hosts.map((h) => ({ user: h.user, host: h.host, port: h.port })), identity: key.path, jobsPerHost: 2 };
  const backend = sshPlugin.open({
    home,
    remote,
    settings: { knownHostsPath: join(home, 'known_hosts'), labels: { 'dstack.test': 'backend-contract-ssh' } },
  });
  await backend.check(new AbortController().signal);
  return {
    backend,
    store: new LocalArtifactStore({ home }),
    unsupported: [],
    loseMachine: async (handle) => {
      const i = hosts.findIndex((h) => handle.host === `${h.user}@${h.host}:${h.port}`);
      assert.ok(i >= 0, `the job runs on a host of the pool: ${String(handle.host)}`);
      await killHost(hosts[i]!);
      return { status: 'failed', reason: /^lost connection to root@127\.0\.0\.1:\d+$/, restore: async () => void (hosts[i] = await restartHost(hosts[i]!)) };
    },
    leftovers: async () => [
      ...(await containersLabelled(LABEL)).map((c) => `container ${c.id.slice(0, 12)}`),
      ...(
        await Promise.all(hosts.map(async (h) => (await readdir(join(h.home, '.dstack', 'jobs')).catch(() => [] as string[])).map((d) => `job folder ${d} on ${h.name}`)))
      ).flat(),
    ],
    cleanup: async () => {
      await sweepContainers(LABEL);
      await backend.close();
      await Promise.all(hosts.map((h) => removeHost(h)));
      await sweepHosts();
      closeTestDocker();
      await rm(home, { recursive: true, force: true });
    },
  };
});
