/**
 * The bucket contract (test/integration/bucket-contract.ts) against a shared folder: a temporary
 * folder standing for an NFS or SMB mount. Leftovers: temp files under ROOT/.tmp.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FolderBucket } from '../../src/remote-store/folder-bucket.js';
import { registerBucketContract } from './bucket-contract.js';

registerBucketContract('folder', async () => {
  const root = await mkdtemp(join(tmpdir(), 'dstack-bucket-folder-'));
  const bucket = new FolderBucket(root);
  return {
    bucket,
    reset: async () => {
      for (const name of await readdir(root)) if (name !== '.tmp') await rm(join(root, name), { recursive: true, force: true });
    },
    leftovers: async () => (await readdir(join(root, '.tmp')).catch(() => [] as string[])).map((n) => `temp file ${n}`),
    cleanup: async () => rm(root, { recursive: true, force: true }),
  };
});
