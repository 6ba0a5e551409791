/**
 * The SSH pool of the remote e2e tests: the test hosts (test/helpers/ssh-hosts.ts) made a project's
 * remote `pool` with `dstack config ssh`, and the sweep at the end of a file.
 */
import * as assert from 'uvu/assert';
import { containersOf, homes, type Project } from './cli.js';
import { clientKey, sweepHosts, type TestHost } from './ssh-hosts.js';

/** `dstack config ssh --name pool` in `p`: `hosts` on 127.0.0.1 as root, the client key as identity, then `extra`. */
export async function configurePool(p: Project, hosts: readonly TestHost[], ...extra: string[]): Promise<void> {
  const key = await clientKey();
  const r = await p.run(['config', 'ssh', '--name', 'pool', ...hosts.flatMap((h) => ['--host', `root@127.0.0.1:${h.port}`]), '--identity', key.path, ...extra]);
  assert.is(r.exitCode, 0, r.stderr);
}

/** No job container of any home made in this process, and no SSH host of this process, is left. */
export async function assertNoHostOrContainerLeft(): Promise<void> {
  let leaked = 0;
  for (const home of homes) leaked += (await containersOf(home)).length;
  assert.is(leaked, 0, 'job containers leaked');
  assert.is(await sweepHosts(), 0, 'SSH hosts leaked');
}
