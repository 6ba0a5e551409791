/**
 * The AWS test harness itself (test/helpers/moto.ts, ec2-faults.ts, instances.ts): moto serves EC2
 * with our AMI list; an instance that runs in moto gets a container you can SSH into with the host
 * key its user-data installed; terminating it in moto removes the container; `shutdown` inside it
 * terminates it in moto; the fault proxy answers chosen calls with EC2's real error replies, which
 * the real SDK parses. After every test no instance is left running in moto and no container is left.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile } from 'node:fs/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  EC2Client,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { startFaultProxy, type FaultProxy } from '../helpers/ec2-faults.js';
import { liveInstances, motoClient, startInstanceWatcher, sweepInstanceContainers, type InstanceWatcher } from '../helpers/instances.js';
import { NEWEST_UBUNTU, OWNER_CANONICAL, startMoto, type Moto } from '../helpers/moto.js';
import { generateKeyPair, clientKey } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';

const run = promisify(execFile);
let moto: Moto;
let ec2: EC2Client;
let watcher: InstanceWatcher;

test.before(async () => {
  moto = await startMoto();
  ec2 = motoClient(moto.endpoint);
});
test.after(async () => {
  ec2.destroy();
  await moto.stop();
});

/** User-data that does what dstack's must at least do: our host key (sshd reloads it), our authorized key. */
async function userData(extra = ''): Promise<{ script: string; knownHosts: string; key: string }> {
  const host = await generateKeyPair(`harness-host-${Date.now()}`);
  const priv = await readFile(host.path, 'utf8');
  const client = await clientKey();
  const script = `#!/bin/bash
set -e
(umask 077 && cat > /etc/ssh/new_host_key <<'KEY'
${priv.trim()}
KEY
)
echo '${host.publicKey}' > /etc/ssh/ssh_host_ed25519_key.pub
mv /etc/ssh/new_host_key /etc/ssh/ssh_host_ed25519_key
systemctl try-restart ssh.service
mkdir -p ~ubuntu/.ssh && echo '${client.publicKey}' > ~ubuntu/.ssh/authorized_keys
chown -R ubuntu ~ubuntu/.ssh
echo booted-by-user-data > /var/lib/booted
${extra}
`;
  return { script, knownHosts: host.publicKey, key: client.path };
}

async function launch(script: string): Promise<string> {
  const r = await ec2.send(
    new RunInstancesCommand({
      ImageId: NEWEST_UBUNTU,
      InstanceType: 't3.micro',
      MinCount: 1,
      MaxCount: 1,
      UserData: Buffer.from(script).toString('base64'),
      InstanceInitiatedShutdownBehavior: 'terminate',
    }),
  );
  return r.Instances![0]!.InstanceId!;
}

async function ssh(port: number, key: string, knownHostsLine: string, command: string): Promise<string> {
  const kh = `/tmp/dstack-harness-known-${process.pid}`;
  await import('node:fs/promises').then((fs) => fs.writeFile(kh, `[127.0.0.1]:${port} ${knownHostsLine}\n`));
  const r = await run('ssh', ['-i', key, '-p', String(port), '-o', `UserKnownHostsFile=${kh}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', 'ubuntu@127.0.0.1', command]);
  return r.stdout.trim();
}

async function state(id: string): Promise<string | undefined> {
  const r = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
  return r.Reservations?.[0]?.Instances?.[0]?.State?.Name;
}

async function nothingLeft(): Promise<void> {
  assert.equal(await liveInstances(ec2), [], 'instances left running in moto');
  assert.is(await sweepInstanceContainers(), 0, 'instance containers left');
}

test.before.each(async () => {
  await moto.reset();
  watcher = await startInstanceWatcher({ endpoint: moto.endpoint });
});
test.after.each(async () => {
  await watcher.stop();
  await nothingLeft();
});

test('moto serves our AMI list: the newest Ubuntu of Canonical is there by name', withTimeout(30_000, async () => {
  const r = await ec2.send(new DescribeImagesCommand({ Owners: [OWNER_CANONICAL], Filters: [{ Name: 'name', Values: ['ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*'] }] }));
  const ids = (r.Images ?? []).map((i) => i.ImageId).sort();
  assert.equal(ids, ['ami-0b0b00000000000b1', NEWEST_UBUNTU]);
}));

test('an instance running in moto gets a container: SSH with the host key its user-data installed, then terminate removes it', withTimeout(90_000, async () => {
  const ud = await userData();
  const id = await launch(ud.script);
  try {
    const w = await watcher.waitFor((i) => i.id === id);
    const map = JSON.parse(await readFile(watcher.mapPath, 'utf8')) as Record<string, string>;
    assert.is(map[id], `127.0.0.1:${w.port}`);
    const out = await waitForSsh(() => ssh(w.port, ud.key, ud.knownHosts, 'cat /var/lib/booted; id -nG; test -S /var/run/docker.sock && echo docker-socket; echo $HOME'));
    assert.equal(out.split('\n'), ['booted-by-user-data', 'ubuntu docker', 'docker-socket', w.home]);
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    await watcher.waitGone(id);
    const after = JSON.parse(await readFile(watcher.mapPath, 'utf8')) as Record<string, string>;
    assert.is(after[id], undefined);
  } finally {
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
  }
}));

test('`shutdown` inside the instance terminates it in moto (InstanceInitiatedShutdownBehavior=terminate)', withTimeout(90_000, async () => {
  const ud = await userData();
  const id = await launch(ud.script);
  try {
    const w = await watcher.waitFor((i) => i.id === id);
    await waitForSsh(() => ssh(w.port, ud.key, ud.knownHosts, 'true'));
    await watcher.execAsRoot(id, 'shutdown -h now').catch(() => undefined);
    await watcher.waitGone(id);
    assert.is(await state(id), 'terminated');
  } finally {
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
  }
}));

test('a user-data that fails is logged as cloud-init does, and the boot goes on', withTimeout(90_000, async () => {
  const ud = await userData('echo about-to-fail\nfalse');
  const id = await launch(ud.script);
  try {
    const w = await watcher.waitFor((i) => i.id === id);
    await waitForSsh(() => ssh(w.port, ud.key, ud.knownHosts, 'true'));
    const log = await watcher.bootLog(id);
    assert.match(log, /about-to-fail/);
    assert.match(log, /user-data script failed with status 1/);
  } finally {
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
  }
}));

test('fault proxy: RunInstances answered with InsufficientInstanceCapacity (HTTP 500) once, as the SDK parses it; then through to moto', withTimeout(30_000, async () => {
  const proxy: FaultProxy = await startFaultProxy(moto.endpoint);
  const client = new EC2Client({ endpoint: proxy.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, maxAttempts: 1 });
  try {
    proxy.add({ action: 'RunInstances', params: { InstanceType: 't3.micro' }, fault: 'InsufficientInstanceCapacity', times: 1 });
    const params = { ImageId: NEWEST_UBUNTU, InstanceType: 't3.micro' as const, MinCount: 1, MaxCount: 1, Placement: { AvailabilityZone: 'us-east-1a' } };
    const err = await client.send(new RunInstancesCommand(params)).then(() => undefined, (e: unknown) => e as { name: string; message: string; $metadata: { httpStatusCode: number } });
    assert.ok(err, 'the first RunInstances must fail');
    assert.is(err.name, 'InsufficientInstanceCapacity');
    assert.is(err.$metadata.httpStatusCode, 500);
    assert.match(err.message, /do not have sufficient t3\.micro capacity in the Availability Zone you requested \(us-east-1a\)/);
    const ok = await client.send(new RunInstancesCommand(params));
    const id = ok.Instances![0]!.InstanceId!;
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    assert.equal(proxy.calls.map((c) => [c.action, c.fault ?? null]), [['RunInstances', 'InsufficientInstanceCapacity'], ['RunInstances', null]]);
  } finally {
    client.destroy();
    await proxy.close();
  }
}));

test('fault proxy: throttling is 503 RequestLimitExceeded, which the SDK retries by itself', withTimeout(30_000, async () => {
  const proxy = await startFaultProxy(moto.endpoint);
  const client = new EC2Client({ endpoint: proxy.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, maxAttempts: 3 });
  try {
    proxy.add({ action: 'DescribeInstances', fault: 'RequestLimitExceeded', times: 2 });
    const r = await client.send(new DescribeInstancesCommand({}));
    assert.equal(r.Reservations, []);
    assert.is(r.$metadata.attempts, 3);
    assert.equal(proxy.calls.map((c) => c.fault ?? null), ['RequestLimitExceeded', 'RequestLimitExceeded', null]);
  } finally {
    client.destroy();
    await proxy.close();
  }
}));

test('fault proxy: a spot interruption is shown with EC2\'s state reason for that instance only', withTimeout(30_000, async () => {
  const proxy = await startFaultProxy(moto.endpoint);
  const client = new EC2Client({ endpoint: proxy.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, maxAttempts: 1 });
  try {
    const launch = async (): Promise<string> => (await ec2.send(new RunInstancesCommand({ ImageId: NEWEST_UBUNTU, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1 }))).Instances![0]!.InstanceId!;
    const [a, b] = [await launch(), await launch()];
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [a, b] }));
    proxy.spotInterrupted(a);
    const r = await client.send(new DescribeInstancesCommand({ InstanceIds: [a, b] }));
    const reasons = Object.fromEntries((r.Reservations ?? []).flatMap((x) => x.Instances ?? []).map((i) => [i.InstanceId, i.StateReason?.Code]));
    assert.equal(reasons, { [a]: 'Server.SpotInstanceTermination', [b]: 'Client.UserInitiatedShutdown' });
  } finally {
    client.destroy();
    await proxy.close();
  }
}));

/** sshd comes up after the user-data: retry the first connection until it answers (bounded). */
async function waitForSsh<T>(attempt: () => Promise<T>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await attempt();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

test('sweep: no instance container of this process is left', withTimeout(30_000, async () => {
  assert.is(await sweepInstanceContainers(), 0);
}));

test.run();
