/**
 * The backend contract (test/integration/backend-contract.ts) against the local backend: jobs in
 * containers of this machine's Docker engine, each carrying `dstack.test=backend-contract-local`.
 * Its machine is lost when the job's container is killed behind its back: the job fails.
 */
import { readdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { localPlugin } from '../../src/backends/local/index.js';
import { closeTestDocker, containersLabelled, ensureBusybox, sweepContainers, testDocker } from '../helpers/docker.js';
import { registerBackendContract } from './backend-contract.js';

const LABEL = 'dstack.test=backend-contract-local';

registerBackendContract('local', async () => {
  await ensureBusybox();
  const home = await mkdtemp(join(tmpdir(), 'dstack-contract-local-'));
  const backend = localPlugin.open({ home, settings: { labels: { 'dstack.test': 'backend-contract-local' } } });
  return {
    backend,
    store: new LocalArtifactStore({ home }),
    unsupported: [],
    // This machine is not lost short of the engine dying: the job's container killed behind dstack's back is.
    loseMachine: async (handle) => {
      await testDocker().call('POST', `/containers/${String(handle.container)}/kill`);
      return { status: 'failed', reason: /^killed \(SIGKILL\) outside dstack$/ };
    },
    leftovers: async () => [
      ...(await containersLabelled(LABEL)).map((c) => `container ${c.id.slice(0, 12)}`),
      ...(await readdir(join(home, 'jobs')).catch(() => [] as string[])).map((d) => `job folder ${join(home, 'jobs', d)}`),
    ],
    cleanup: async () => {
      await sweepContainers(LABEL);
      await backend.close();
      closeTestDocker();
      await rm(home, { recursive: true, force: true });
    },
  };
});
