/**
 * The built-in backend plugins: a static list compiled into the binary (the shape of yarn's
 * built-in plugins). A cloud joins by one line here and its own folder (src/backends/<kind>/, an
 * InstanceProvider over src/backends/ssh-host/instance-backend.ts); no CLI file changes. Each plugin
 * loads its SDK lazily inside its own folder. The team bucket's remotes (`folder`, `s3`) are listed
 * here too: they store runs and run none (`storesOnly`).
 */
import { awsPlugin } from './aws/index.js';
import { folderPlugin, s3Plugin } from './bucket/index.js';
import { localPlugin } from './local/index.js';
import { BackendRegistry } from './registry.js';
import { sshPlugin } from './ssh/index.js';

export const registry = new BackendRegistry([localPlugin, sshPlugin, awsPlugin, folderPlugin, s3Plugin]);
