/**
 * EC2 instances you can SSH into, for tests against moto: a watcher polls moto, and for each
 * instance that reaches `running` starts a container of `dstack-test/sshhost` that plays it — boots
 * like the AMI would, authorizes the launch's key pair, starts sshd and runs the instance's user-data
 * (from `DescribeInstanceAttribute`) as root the way cloud-init does — and writes `instance id → 127.0.0.1:PORT` into the address map
 * file that dstack reads instead of the instance's public address (`DSTACK_INSTANCE_ADDRESS_MAP`).
 * moto's public addresses are real ones: no test ever connects to them.
 *
 * Both directions of an instance's end are played: terminating (or stopping) it in moto removes its
 * container; the container ending by itself — `shutdown`, `poweroff` or `halt` inside it, which the
 * "AMI" maps to SIGTERM of PID 1 — is answered by TerminateInstances in moto when the instance's
 * `instanceInitiatedShutdownBehavior` is `terminate` (StopInstances when it is `stop`), as EC2 does.
 *
 * What the "AMI" is (the choice written down, as TESTING.md asks): Ubuntu-like — a login user
 * `ubuntu` in group `docker`, sshd settings as on a real image (key-only, no root login,
 * `~/.ssh/authorized_keys`; `StrictModes no` only because the home lives under the world-writable /tmp), its own freshly generated host key (which the user-data must replace
 * with the one dstack made, or dstack refuses to connect). It has no Docker engine of its own: it
 * gets THIS machine's engine socket at /var/run/docker.sock (the group `docker` has the socket's
 * gid), so the job containers it starts are siblings on this machine's engine; and the login home
 * is a folder of this machine, `/tmp/dstack-instances/<container>/home/ubuntu`, mounted at the SAME
 * path inside, so the job folders dstack makes under `$HOME/.dstack` resolve for the engine's bind
 * mounts. It runs in this machine's network namespace, its sshd on a free port of 127.0.0.1.
 *
 * Containers carry `dstack.test=ec2-instance`, the watcher's pid and the instance id, so a sweep at
 * the end of a file (and the next test process, for a dead one's) finds every one.
 */
import { execFile } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  EC2Client,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type Instance,
} from '@aws-sdk/client-ec2';
import { endpointFromEnv } from '../../src/backends/docker/docker.js';
import { freePort, SSH_HOST_IMAGE } from './ssh-hosts.js';

export const INSTANCES_ROOT = '/tmp/dstack-instances';
const LABEL = 'dstack.test=ec2-instance';
const PID_LABEL = `dstack.test.pid=${process.pid}`;
const LOGIN = 'ubuntu';

const exec = promisify(execFile);
async function docker(...args: string[]): Promise<string> {
  try {
    return (await exec('docker', args, { maxBuffer: 16 * 1024 * 1024 })).stdout.trim();
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`docker ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** A client of moto itself (never through a fault proxy: the watcher is not dstack). */
export function motoClient(endpoint: string, region = 'us-east-1'): EC2Client {
  // The SDK warns on Node 20 about its releases of 2027; the tests' output is not the place.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new EC2Client({ endpoint, region, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' }, maxAttempts: 1 });
}

/**
 * The "AMI" boot, as root in the container, in EC2's order: the login user, sshd's settings and the
 * image's own host key; cloud-init's early part — the launch's key pair (`KeyName`) authorized for
 * the login user — and sshd started, as on EC2 where it runs while cloud-init goes on; then
 * cloud-init's final part, the user-data once (output in /var/log/cloud-init-output.log, a failure
 * logged and the boot going on as cloud-init's does). sshd is restarted when it exits, as systemd's
 * ssh.service is; `systemctl is-active|try-restart|restart ssh[d]` answer for it (a restart is
 * SIGHUP: sshd re-executes itself and reloads its keys); `shutdown`, `poweroff` and `halt` end PID 1.
 */
const BOOT = String.raw`set -u
groupadd -g "$DOCKER_GID" docker 2>/dev/null || groupmod -g "$DOCKER_GID" docker
useradd -M -d "$LOGIN_HOME" -s /bin/bash -G docker ${LOGIN}
# No password, but not locked: without PAM, sshd refuses a locked account ('!') even with a key.
usermod -p '*' ${LOGIN}
mkdir -p "$LOGIN_HOME" && chown ${LOGIN}:${LOGIN} "$LOGIN_HOME"
cat > /etc/ssh/sshd_config <<SSHD_CONFIG
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
PrintMotd no
Subsystem sftp internal-sftp
SSHD_CONFIG
rm -f /etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
for c in shutdown poweroff halt; do printf '#!/bin/sh\nkill -TERM 1\n' > /usr/local/sbin/$c; chmod 755 /usr/local/sbin/$c; done
cat > /usr/local/sbin/systemctl <<'SYSTEMCTL'
#!/bin/sh
[ "$2" = -q ] && set -- "$1" "$3"
case "$1 $2" in
  "is-active ssh"|"is-active ssh.service"|"is-active sshd"|"is-active sshd.service") kill -0 "$(cat /run/dstack-test-sshd.pid)" 2>/dev/null ;;
  "try-restart ssh"*|"restart ssh"*|"reload ssh"*) kill -HUP "$(cat /run/dstack-test-sshd.pid)" ;;
  *) echo "systemctl: not in this test instance: $*" >&2; exit 1 ;;
esac
SYSTEMCTL
chmod 755 /usr/local/sbin/systemctl
if [ -n "$KEY_PAIR" ]; then
  mkdir -p "$LOGIN_HOME/.ssh" && printf '%s\n' "$KEY_PAIR" >> "$LOGIN_HOME/.ssh/authorized_keys"
  chown -R ${LOGIN}:${LOGIN} "$LOGIN_HOME/.ssh" && chmod 700 "$LOGIN_HOME/.ssh" && chmod 600 "$LOGIN_HOME/.ssh/authorized_keys"
fi
mkdir -p /var/lib/cloud/instance/scripts /run/sshd
# As ssh.service (Restart=on-failure): an sshd that exits, e.g. on a host key caught half-written, comes back.
(while :; do /usr/sbin/sshd -D -e & echo $! > /run/dstack-test-sshd.pid; wait $!; sleep 1; done) &
if head -c 2 /var/lib/cloud/instance/user-data.txt | grep -q '#!'; then
  install -m 700 /var/lib/cloud/instance/user-data.txt /var/lib/cloud/instance/scripts/part-001
  /var/lib/cloud/instance/scripts/part-001 >> /var/log/cloud-init-output.log 2>&1 \
    || echo "cloud-init: user-data script failed with status $?" >> /var/log/cloud-init-output.log
fi
wait`;

export interface WatchedInstance {
  readonly id: string;
  readonly container: string;
  readonly port: number;
  /** The login user's home: the same path on this machine and inside the instance. */
  readonly home: string;
  readonly userData: string;
}

export interface InstanceWatcher {
  /** The address map file: give it to dstack as `DSTACK_INSTANCE_ADDRESS_MAP`. */
  readonly mapPath: string;
  /** Instances that got a container, by id (also those since gone). */
  readonly seen: ReadonlyMap<string, WatchedInstance>;
  /** Resolves with the first instance (running in moto, its container started) that `accept` takes. */
  waitFor(accept?: (i: WatchedInstance) => boolean, ms?: number): Promise<WatchedInstance>;
  /** Resolves once the instance's container is gone (its instance ended, one way or the other). */
  waitGone(id: string, ms?: number): Promise<void>;
  /** What cloud-init logged while running the user-data. */
  bootLog(id: string): Promise<string>;
  /** Runs a command as root inside the instance (`shutdown -h now`, as the dead-man switch would). */
  execAsRoot(id: string, command: string): Promise<string>;
  /** Stops watching and removes every container it started (their instances are left to the test). */
  stop(): Promise<void>;
}

interface Tracked {
  readonly instance: WatchedInstance;
  gone: boolean;
}

const dockerGid = (): number => {
  const socket = endpointFromEnv().socketPath;
  if (!socket) throw new Error('the instance watcher needs a Docker engine on a Unix socket');
  return statSync(socket).gid;
};

async function startContainer(ec2: EC2Client, id: string, keyName: string | undefined, mapDir: string): Promise<WatchedInstance> {
  const [ud, port, keyPair] = await Promise.all([
    ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: 'userData' })),
    freePort(),
    keyName ? ec2.send(new DescribeKeyPairsCommand({ KeyNames: [keyName], IncludePublicKey: true })).then((r) => r.KeyPairs?.[0]?.PublicKey ?? '') : '',
  ]);
  const userData = ud.UserData?.Value ? Buffer.from(ud.UserData.Value, 'base64').toString('utf8') : '';
  const name = `dstack-ec2-${process.pid}-${id}`;
  const dir = join(INSTANCES_ROOT, name);
  const home = join(dir, 'home', LOGIN);
  await mkdir(home, { recursive: true });
  const udPath = join(dir, 'user-data');
  await writeFile(udPath, userData, { mode: 0o600 });
  await chmod(udPath, 0o600);
  const socket = endpointFromEnv().socketPath!;
  const container = await docker(
    'run', '-d', '--init', '--name', name,
    '--label', LABEL, '--label', PID_LABEL, '--label', `dstack.test.instance=${id}`, '--label', `dstack.test.map=${mapDir}`,
    '--network', 'host',
    '-e', `SSH_PORT=${port}`, '-e', `LOGIN_HOME=${home}`, '-e', `DOCKER_GID=${dockerGid()}`, '-e', `KEY_PAIR=${keyPair.trim()}`,
    '-v', `${udPath}:/var/lib/cloud/instance/user-data.txt:ro`,
    '-v', `${home}:${home}`,
    '-v', `${socket}:/var/run/docker.sock`,
    '--entrypoint', '/bin/sh',
    SSH_HOST_IMAGE, '-c', BOOT,
  );
  return { id, container, port, home, userData };
}

async function writeMap(path: string, entries: ReadonlyMap<string, string>): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(Object.fromEntries(entries), null, 2)}\n`);
  await rename(tmp, path);
}

/** A machine-level end: the instance's container and the job containers it started (label `dstack.host`). */
async function removeInstanceContainer(w: WatchedInstance): Promise<void> {
  await docker('rm', '-f', '-v', w.container).catch(() => undefined);
  // On EC2 the job's container dies with the machine; here it is a sibling on this machine's engine.
  const jobs = await docker('ps', '-aq', '--filter', `label=dstack.host=${LOGIN}@127.0.0.1:${w.port}`).catch(() => '');
  const ids = jobs.split('\n').filter(Boolean);
  if (ids.length) await docker('rm', '-f', ...ids).catch(() => undefined);
  await rm(join(INSTANCES_ROOT, `dstack-ec2-${process.pid}-${w.id}`), { recursive: true, force: true }).catch(() => undefined);
}

const ENDED = new Set(['shutting-down', 'terminated', 'stopping', 'stopped']);

/** Starts watching moto at `endpoint`. Stop it in a `finally`. */
export async function startInstanceWatcher(options: { readonly endpoint: string; readonly region?: string; readonly intervalMs?: number }): Promise<InstanceWatcher> {
  const ec2 = motoClient(options.endpoint, options.region);
  const mapDir = await mkdtemp(join(tmpdir(), 'dstack-instance-map-'));
  const mapPath = join(mapDir, 'addresses.json');
  const addresses = new Map<string, string>();
  await writeMap(mapPath, addresses);
  const tracked = new Map<string, Tracked>();
  const seen = new Map<string, WatchedInstance>();
  const starting = new Set<string>();
  let stopped = false;
  let failure: Error | undefined;

  const endInstance = async (t: Tracked): Promise<void> => {
    addresses.delete(t.instance.id);
    await writeMap(mapPath, addresses);
    await removeInstanceContainer(t.instance);
    t.gone = true;
  };

  const tick = async (): Promise<void> => {
    const r = await ec2.send(new DescribeInstancesCommand({}));
    const instances: Instance[] = (r.Reservations ?? []).flatMap((x) => x.Instances ?? []);
    const states = new Map(instances.map((i) => [i.InstanceId!, i.State?.Name ?? 'unknown'] as const));
    const keyNames = new Map(instances.map((i) => [i.InstanceId!, i.KeyName] as const));
    const running = new Set((await docker('ps', '-q', '--no-trunc', '--filter', `label=dstack.test.map=${mapDir}`)).split('\n').filter(Boolean));
    for (const [id, state] of states) {
      if (state !== 'running' || tracked.has(id) || starting.has(id)) continue;
      starting.add(id);
      try {
        const w = await startContainer(ec2, id, keyNames.get(id), mapDir);
        addresses.set(id, `127.0.0.1:${w.port}`);
        await writeMap(mapPath, addresses);
        tracked.set(id, { instance: w, gone: false });
        seen.set(id, w);
        running.add(w.container);
      } finally {
        starting.delete(id);
      }
    }
    for (const t of tracked.values()) {
      if (t.gone) continue;
      const state = states.get(t.instance.id);
      if (state === undefined || ENDED.has(state)) {
        await endInstance(t);
      } else if (!running.has(t.instance.container)) {
        // The instance shut itself down: EC2 acts on instanceInitiatedShutdownBehavior.
        const b = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: t.instance.id, Attribute: 'instanceInitiatedShutdownBehavior' }));
        const ids = [t.instance.id];
        if (b.InstanceInitiatedShutdownBehavior?.Value === 'stop') await ec2.send(new StopInstancesCommand({ InstanceIds: ids }));
        else await ec2.send(new TerminateInstancesCommand({ InstanceIds: ids }));
        await endInstance(t);
      }
    }
  };

  const loop = (async () => {
    while (!stopped) {
      try {
        await tick();
      } catch (e) {
        if (!stopped) failure = e as Error;
      }
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 200));
    }
  })();

  const until = async <T>(what: string, ms: number, probe: () => T | undefined): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      if (failure) throw new Error(`instance watcher failed: ${failure.message}`);
      const v = probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  return {
    mapPath,
    seen,
    waitFor: (accept = () => true, ms = 60_000) =>
      until('an instance to run', ms, () => [...tracked.values()].find((t) => !t.gone && accept(t.instance))?.instance),
    waitGone: async (id, ms = 60_000) => {
      await until(`instance ${id} to end`, ms, () => (tracked.get(id)?.gone ? true : undefined));
    },
    bootLog: (id) => {
      const t = tracked.get(id);
      if (!t) return Promise.resolve('');
      return docker('exec', t.instance.container, 'cat', '/var/log/cloud-init-output.log').catch((e: Error) => `(no boot log: ${e.message})`);
    },
    execAsRoot: (id, command) => {
      const t = tracked.get(id);
      if (!t) throw new Error(`no container for instance ${id}`);
      return docker('exec', t.instance.container, 'sh', '-c', command);
    },
    stop: async () => {
      stopped = true;
      await loop;
      await Promise.all([...tracked.values()].map((t) => removeInstanceContainer(t.instance)));
      ec2.destroy();
      rmSync(mapDir, { recursive: true, force: true });
    },
  };
}

/**
 * Removes the instance containers of this process (or of every process) and returns how many there
 * were: a leak when > 0 at the end of a file.
 */
export async function sweepInstanceContainers(everyProcess = false): Promise<number> {
  const filters = ['--filter', `label=${LABEL}`, ...(everyProcess ? [] : ['--filter', `label=${PID_LABEL}`])];
  const out = await docker('ps', '-a', '--no-trunc', ...filters, '--format', '{{.ID}} {{.Names}}');
  const found = out.split('\n').filter(Boolean).map((l) => l.split(' ') as [string, string]);
  for (const [id, name] of found) {
    await docker('rm', '-f', '-v', id).catch(() => undefined);
    await rm(join(INSTANCES_ROOT, name), { recursive: true, force: true });
  }
  return found.length;
}

/** Instances in moto that still cost money (pending or running), by id. */
export async function liveInstances(ec2: EC2Client): Promise<string[]> {
  const r = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['pending', 'running', 'stopping'] }] }));
  return (r.Reservations ?? []).flatMap((x) => x.Instances ?? []).map((i) => i.InstanceId!);
}
