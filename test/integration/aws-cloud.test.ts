/**
 * The AWS backend's EC2 side (src/backends/aws/cloud.ts through the real SDK, sdk.ts) against moto,
 * with the instance watcher playing the instances and, where moto cannot fail, the fault proxy
 * answering with EC2's real error replies (tests named "fault proxy"). SSH here is OpenSSH's client,
 * only to look inside an instance; the job's SSH path is the shared instance machinery's tests'.
 * After every test: no instance running in moto, no instance container left.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  DescribeVolumesCommand,
  type EC2Client,
} from '@aws-sdk/client-ec2';
import { AwsCloud, type AwsHandle } from '../../src/backends/aws/cloud.js';
import type { AwsRemote } from '../../src/backends/aws/config.js';
import { homeIdOf } from '../../src/backends/aws/resources.js';
import { customEndpoint, openEc2 } from '../../src/backends/aws/sdk.js';
import { BOOTSTRAP_DONE, BOOTSTRAP_FAILED } from '../../src/backends/aws/user-data.js';
import { DstackError } from '../../src/engine/errors.js';
import type { JobSpec } from '../../src/engine/types.js';
import { startFaultProxy, type FaultProxy } from '../helpers/ec2-faults.js';
import { liveInstances, motoClient, startInstanceWatcher, sweepInstanceContainers, type InstanceWatcher } from '../helpers/instances.js';
import { motoEnv, NEWEST_DLAMI, NEWEST_UBUNTU, startMoto, type Moto } from '../helpers/moto.js';
import { jobSpec } from '../helpers/spec.js';
import { clientKey, generateKeyPair } from '../helpers/ssh-hosts.js';
import { withTimeout } from '../helpers/timeout.js';

const exec = promisify(execFile);
let moto: Moto;
let proxy: FaultProxy;
let ec2: EC2Client;
let watcher: InstanceWatcher;
const cleanups: (() => Promise<void>)[] = [];

const REMOTE: AwsRemote = { name: 'cloud', kind: 'aws', region: 'us-east-1', bucket: 'dstack-test', sshCidr: '127.0.0.1/32' };
/**
 * Stands in for the shared boot script (host key, dead-man switch): these tests are about EC2; the
 * real one runs in the end-to-end tests.
 */
const bootScriptFor = (privatePem: string, publicKey: string): string => `#!/bin/sh
(umask 077 && cat > /etc/ssh/new_host_key <<'KEY'
${privatePem.trim()}
KEY
)
echo '${publicKey}' > /etc/ssh/ssh_host_ed25519_key.pub
mv /etc/ssh/new_host_key /etc/ssh/ssh_host_ed25519_key
systemctl try-restart ssh.service
touch /var/lib/dstack/heartbeat
`;

test.before(async () => {
  moto = await startMoto();
  proxy = await startFaultProxy(moto.endpoint);
  Object.assign(process.env, motoEnv(proxy.endpoint));
  ec2 = motoClient(moto.endpoint);
});
test.after(async () => {
  ec2.destroy();
  await proxy.close();
  await moto.stop();
});
test.before.each(async () => {
  await moto.reset();
  proxy.clear();
  watcher = await startInstanceWatcher({ endpoint: moto.endpoint });
  process.env.DSTACK_INSTANCE_ADDRESS_MAP = watcher.mapPath;
});
test.after.each(async () => {
  for (const c of cleanups.splice(0)) await c().catch(() => undefined);
  await watcher.stop();
  assert.equal(await liveInstances(ec2), [], 'instances left running in moto');
  assert.is(await sweepInstanceContainers(), 0, 'instance containers left');
});

function cloud(remote: AwsRemote = REMOTE): AwsCloud {
  const c = new AwsCloud({ remote, open: () => openEc2({ region: remote.region }), endpoint: customEndpoint(), pollMs: () => 100 });
  cleanups.push(async () => c.close());
  return c;
}

async function launchInput(spec: JobSpec, recorded: AwsHandle[], notes: string[] = []) {
  const client = await clientKey();
  const host = await generateKeyPair(`cloud-host-${Date.now()}`);
  return {
    host,
    input: {
      spec,
      run: 'wet-mangust-1',
      job: 'wet-mangust-1/train',
      homeId: homeIdOf(client.publicKey),
      clientPublicKey: client.publicKey,
      bootScript: bootScriptFor(await readFile(host.path, 'utf8'), host.publicKey),
      signal: new AbortController().signal,
      notify: (m: string) => notes.push(m),
      recordInstance: (h: AwsHandle) => {
        recorded.push(h);
        cleanups.push(() => ec2Terminate(h.instance));
      },
    },
  };
}

const ec2Terminate = async (id: string): Promise<void> => {
  const { TerminateInstancesCommand } = await import('@aws-sdk/client-ec2');
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
};

/** Runs `command` on the instance as `ubuntu`, checking the host key dstack generated. */
async function sshRun(port: number, hostPublicKey: string, command: string): Promise<string> {
  const client = await clientKey();
  const kh = `/tmp/dstack-cloud-known-${process.pid}`;
  await writeFile(kh, `[127.0.0.1]:${port} ${hostPublicKey}\n`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await exec('ssh', ['-i', client.path, '-p', String(port), '-o', `UserKnownHostsFile=${kh}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', 'ubuntu@127.0.0.1', command]);
      return r.stdout.trim();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

test('offers against moto: a CPU job gets the cheapest type of at least 2 vCPUs and 8 GiB; a spot GPU job spot first, then on demand', withTimeout(60_000, async () => {
  const c = cloud();
  const cpu = await c.offers({});
  // t3a.large $0.0752, t3.large $0.0832, m6a.large $0.0864
  assert.equal(cpu.slice(0, 3).map((o) => o.type), ['t3a.large', 't3.large', 'm6a.large']);
  assert.ok(cpu.every((o) => o.market === 'on-demand' && !o.gpu && o.vcpus >= 2 && o.memoryMiB >= 8192));
  const gpu = await c.offers({ gpu: { count: 1 }, interruptible: true });
  const firstOnDemand = gpu.findIndex((o) => o.market === 'on-demand');
  assert.ok(firstOnDemand > 0, 'spot offers come first');
  assert.ok(gpu.slice(firstOnDemand).every((o) => o.market === 'on-demand'));
  assert.is(gpu[firstOnDemand]!.type, 'g4dn.xlarge');
  assert.ok(gpu.every((o) => o.gpu && o.gpu.manufacturer === 'NVIDIA'));
  assert.ok(gpu[0]!.zones.length >= 2, 'each offer lists the zones to try');
}));

test('launch: the newest Ubuntu for a CPU job, recorded before any wait; key pair, SSH-only group, IMDSv2, encrypted root, terminate on shutdown, tags everywhere; the user-data runs and the host key is dstack\'s', withTimeout(120_000, async () => {
  const c = cloud();
  const recorded: AwsHandle[] = [];
  const notes: string[] = [];
  const { input, host } = await launchInput(jobSpec(), recorded, notes);
  const launched = await c.launch(input);
  const id = launched.instance.id;
  assert.equal(recorded, [{ instance: id, region: 'us-east-1' }]);
  assert.is(launched.offer.type, 't3a.large');
  assert.is(launched.login, 'ubuntu');
  assert.match(notes.at(-1)!, new RegExp(`^launched ${id}: t3a\\.large \\(on-demand, us-east-1a, \\$0\\.0752/h\\), image ubuntu/images/hvm-ssd/ubuntu-jammy-22\\.04-amd64-server-20240901$`));

  const r = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
  const i = r.Reservations![0]!.Instances![0]!;
  assert.is(i.ImageId, NEWEST_UBUNTU);
  assert.is(i.KeyName, `dstack-${input.homeId}`);
  assert.is(i.MetadataOptions?.HttpTokens, 'required');
  const tags = Object.fromEntries((i.Tags ?? []).map((t) => [t.Key, t.Value]));
  assert.equal(tags, { 'dstack:home': input.homeId, 'dstack:remote': 'cloud', 'dstack:run': 'wet-mangust-1', 'dstack:job': 'wet-mangust-1/train', Name: 'dstack wet-mangust-1/train' });
  const shutdown = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: 'instanceInitiatedShutdownBehavior' }));
  assert.is(shutdown.InstanceInitiatedShutdownBehavior?.Value, 'terminate');
  const volumes = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [id] }] }));
  assert.is(volumes.Volumes?.length, 1);
  assert.is(volumes.Volumes![0]!.Encrypted, true);
  assert.is(volumes.Volumes![0]!.Tags?.find((t) => t.Key === 'dstack:job')?.Value, 'wet-mangust-1/train');
  const groups = await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: i.SecurityGroups!.map((g) => g.GroupId!) }));
  const perms = groups.SecurityGroups![0]!.IpPermissions!;
  assert.equal(perms.map((p) => [p.IpProtocol, p.FromPort, p.ToPort, (p.IpRanges ?? []).map((x) => x.CidrIp)]), [['tcp', 22, 22, ['127.0.0.1/32']]]);
  const keys = await ec2.send(new DescribeKeyPairsCommand({ KeyNames: [`dstack-${input.homeId}`] }));
  assert.is(keys.KeyPairs?.[0]?.Tags?.find((t) => t.Key === 'dstack:home')?.Value, input.homeId);

  const address = await c.waitForAddress(id, new AbortController().signal);
  const w = watcher.seen.get(id)!;
  assert.equal(address, { host: '127.0.0.1', port: w.port });
  const out = await sshRun(address.port, host.publicKey, `test -e ${BOOTSTRAP_DONE} && echo done; test -e ${BOOTSTRAP_FAILED} || echo not-failed; cat /var/lib/dstack/step; test -e /var/lib/dstack/heartbeat && echo boot-script-ran`);
  assert.equal(out.split('\n'), ['done', 'not-failed', 'done', 'boot-script-ran']);
  assert.equal(await c.state(id), { state: 'running' });
  await c.terminate([id]);
  await c.terminate([id]); // idempotent
  const ended = await c.state(id);
  assert.is(ended.state, 'ended');
  await watcher.waitGone(id);
}));

test('a GPU job boots the newest deep-learning AMI of its owner; on a machine without an NVIDIA driver its bootstrap fails at the nvidia step, saying so', withTimeout(120_000, async () => {
  const c = cloud();
  const recorded: AwsHandle[] = [];
  const { input, host } = await launchInput(jobSpec({ resources: { gpu: { count: 1 } } }), recorded);
  const launched = await c.launch(input);
  assert.is(launched.offer.type, 'g4dn.xlarge');
  const r = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [launched.instance.id] }));
  assert.is(r.Reservations![0]!.Instances![0]!.ImageId, NEWEST_DLAMI);
  const address = await c.waitForAddress(launched.instance.id, new AbortController().signal);
  const out = await sshRun(address.port, host.publicKey, `cat ${BOOTSTRAP_FAILED}; test -e ${BOOTSTRAP_DONE} || echo not-done`);
  assert.equal(out.split('\n'), ["step 'nvidia' failed with status 127", 'not-done']);
}));

test('fault proxy: InsufficientInstanceCapacity in the first zone, then the next zone; spot GPU offers before on-demand', withTimeout(120_000, async () => {
  const c = cloud();
  const recorded: AwsHandle[] = [];
  const offers = await c.offers({ gpu: { count: 1 }, interruptible: true });
  const first = offers[0]!;
  proxy.add({ action: 'RunInstances', params: { InstanceType: first.type, 'Placement.AvailabilityZone': first.zones[0]! }, fault: 'InsufficientInstanceCapacity' });
  const { input } = await launchInput(jobSpec({ resources: { gpu: { count: 1 }, interruptible: true } }), recorded);
  const launched = await c.launch(input);
  assert.is(launched.offer, first);
  assert.is(launched.zone, first.zones[1]);
  assert.is(launched.instance.spot, true);
  const runs = proxy.calls.filter((x) => x.action === 'RunInstances');
  assert.equal(runs.map((x) => [x.params.InstanceType, x.params['Placement.AvailabilityZone'], x.params['InstanceMarketOptions.MarketType'], x.fault ?? null]), [
    [first.type, first.zones[0], 'spot', 'InsufficientInstanceCapacity'],
    [first.type, first.zones[1], 'spot', null],
  ]);
  assert.equal(recorded.map((h) => h.instance), [launched.instance.id]);
}));

test('fault proxy: no capacity anywhere — DS0233 lists every attempt and nothing is left running', withTimeout(120_000, async () => {
  const c = cloud();
  proxy.add({ action: 'RunInstances', params: { 'InstanceMarketOptions.MarketType': 'spot' }, fault: 'InsufficientInstanceCapacity' });
  proxy.add({ action: 'RunInstances', fault: 'VcpuLimitExceeded' });
  const recorded: AwsHandle[] = [];
  const { input } = await launchInput(jobSpec({ resources: { cpu: 2, interruptible: true } }), recorded);
  const e = (await c.launch(input).catch((x: unknown) => x)) as DstackError;
  assert.instance(e, DstackError);
  assert.is(e.code, 'DS0233');
  const lines = e.message.split('\n');
  assert.match(lines[0]!, /^no instance could be launched in us-east-1; tried \d+ times:$/);
  assert.ok(lines.some((l) => /^ {2}\S+ \(spot\) in us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1f: InsufficientInstanceCapacity: There is no Spot capacity available that matches your request\.$/.test(l)), e.message);
  assert.is(lines.filter((l) => l.includes('(spot)')).length, 5, e.message);
  // One vCPU quota answer is enough to skip every other on-demand offer of the standard bucket.
  assert.equal(lines.filter((l) => l.includes('(on-demand)')).length, 1, e.message);
  assert.match(lines.find((l) => l.includes('(on-demand)'))!, /VcpuLimitExceeded: You have requested more vCPU capacity/);
  assert.equal(recorded, []);
  assert.equal(await liveInstances(ec2), []);
}));

test('fault proxy: a throttled RunInstances is tried again, and goes through', withTimeout(120_000, async () => {
  const c = cloud();
  proxy.add({ action: 'RunInstances', fault: 'RequestLimitExceeded', times: 1 });
  proxy.add({ action: 'DescribeInstanceTypes', fault: 'InternalError', times: 1 });
  const recorded: AwsHandle[] = [];
  const { input } = await launchInput(jobSpec(), recorded);
  const launched = await c.launch(input);
  assert.equal(proxy.calls.filter((x) => x.action === 'RunInstances').map((x) => x.fault ?? null), ['RequestLimitExceeded', null]);
  assert.equal(recorded.map((h) => h.instance), [launched.instance.id]);
}));

test('no instance type fits: DS0232 says what was asked, before anything is created', withTimeout(60_000, async () => {
  const c = cloud();
  const recorded: AwsHandle[] = [];
  const { input } = await launchInput(jobSpec({ resources: { gpu: { count: 1, name: 'H200' } } }), recorded);
  const e = (await c.launch(input).catch((x: unknown) => x)) as DstackError;
  assert.is(e.code, 'DS0232');
  assert.is(e.message, 'no instance type in us-east-1 offers 2 vCPUs, 8 GiB, 1x H200 GPU');
  assert.equal(proxy.calls.filter((x) => ['RunInstances', 'ImportKeyPair', 'CreateSecurityGroup'].includes(x.action)), []);
}));

test('a custom EC2 endpoint without an address map: DS0238, never the address moto hands out', withTimeout(120_000, async () => {
  const c = cloud();
  const recorded: AwsHandle[] = [];
  const { input } = await launchInput(jobSpec(), recorded);
  const launched = await c.launch(input);
  delete process.env.DSTACK_INSTANCE_ADDRESS_MAP;
  const e = (await c.waitForAddress(launched.instance.id, new AbortController().signal).catch((x: unknown) => x)) as DstackError;
  assert.is(e.code, 'DS0238');
  assert.match(e.message, new RegExp(`^EC2 at ${proxy.endpoint.replace(/[.]/g, '\\.')} is not AWS: the address it gives ${launched.instance.id} \\(\\d+\\.\\d+\\.\\d+\\.\\d+\\) is not that instance's$`));
}));

test('an instance that ends before it is reachable: DS0216 with EC2\'s reason', withTimeout(120_000, async () => {
  const c = cloud();
  const recorded: AwsHandle[] = [];
  const { input } = await launchInput(jobSpec(), recorded);
  const launched = await c.launch(input);
  await ec2Terminate(launched.instance.id);
  const e = (await c.waitForAddress(launched.instance.id, new AbortController().signal).catch((x: unknown) => x)) as DstackError;
  assert.is(e.code, 'DS0216');
  assert.match(e.message, /ended before the job started: (shutting-down|terminated) \(Client\.UserInitiatedShutdown: User initiated shutdown\)$/);
}));

test('sweep: no instance container of this process is left', withTimeout(30_000, async () => {
  assert.is(await sweepInstanceContainers(), 0);
}));

test.run();
