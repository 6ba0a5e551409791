/**
 * The team bucket's remotes (issue 11): a shared folder (`dstack config folder`) and an S3 bucket
 * (`dstack config s3`). They store the team's runs, artifacts, tags and logs (src/remote-store);
 * they run nothing, so `--remote NAME` of one is DS0268 and neither ever becomes the default remote.
 * Their schemas and commands load only when config.json is read or `dstack config` runs; the S3 SDK
 * only when a bucket is opened (src/remote-store/config.ts `openBucket`).
 */
import type { Backend } from '../../engine/backend.js';
import type { FolderRemote, S3Remote } from '../../remote-store/config.js';
import type { Plugin } from '../plugin.js';
import { storesOnlyError } from '../registry.js';

const s3Where = (r: S3Remote): string => `s3://${r.bucket}${r.prefix ? `/${r.prefix.replace(/^\/+|\/+$/g, '')}` : ''}${r.region ? ` (${r.region})` : ''}`;

export const folderPlugin: Plugin<FolderRemote> = {
  kind: 'folder',
  describe: "a shared folder that keeps the team's runs (the team bucket)",
  storesOnly: true,
  configSchema: async () => (await import('../../remote-store/config.js')).folderRemoteSchema,
  addExample: 'dstack config folder --name NAME --path DIR',
  columns: (r) => ({ BUCKET: r.path }),
  commands: async () => [(await import('./config-folder.js')).ConfigFolderCommand],
  open: (options): Backend => {
    throw storesOnlyError(options.remote?.name ?? 'folder', 'folder');
  },
};

export const s3Plugin: Plugin<S3Remote> = {
  kind: 's3',
  describe: "an S3 bucket that keeps the team's runs (the team bucket)",
  storesOnly: true,
  configSchema: async () => (await import('../../remote-store/config.js')).s3RemoteSchema,
  addExample: 'dstack config s3 --name NAME --bucket BUCKET',
  columns: (r) => ({ BUCKET: s3Where(r) }),
  commands: async () => [(await import('./config-s3.js')).ConfigS3Command],
  open: (options): Backend => {
    throw storesOnlyError(options.remote?.name ?? 's3', 's3');
  },
};
