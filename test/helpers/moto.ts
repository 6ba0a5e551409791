/**
 * moto's server as the tests' EC2: `python3 -m moto.server -H 127.0.0.1 -p 0` (through
 * moto_server.py, which fixes resets with our own AMI list), one per test file,
 * reset between tests (`POST /moto-api/reset`), stopped in the end.
 *
 * It starts with moto's validation switched on (unknown instance types, AMIs and key pairs are
 * rejected as AWS would) and with our own AMI list (`MOTO_AMIS_PATH`, replacing moto's ~1,200
 * defaults): the deep-learning AMIs and plain Ubuntu AMIs the AWS backend looks for by name — an
 * older and a newer one of each, so "the newest matching AMI" can be told from "any matching AMI" —
 * plus a decoy of another owner with a newer date that must never be picked.
 *
 * moto hands out real public IP addresses: nothing here (or anywhere in the tests) connects to them.
 * The instance watcher (instances.ts) maps instances to loopback ports instead.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Owners as on AWS: the DLAMI and Amazon Linux images are Amazon's, Ubuntu's are Canonical's. */
export const OWNER_AMAZON = '898082745236';
export const OWNER_CANONICAL = '099720109477';
const OWNER_STRANGER = '111122223333';

export interface TestAmi {
  readonly id: string;
  readonly name: string;
  readonly owner: string;
  readonly created: string;
  readonly architecture?: 'x86_64' | 'arm64';
}

const DLAMI = 'Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)';
const UBUNTU = 'ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server';

/** The AMIs every test moto serves; the newest of each kind is the one dstack must choose. */
export const TEST_AMIS: readonly TestAmi[] = [
  { id: 'ami-0d1a00000000000a1', name: `${DLAMI} 20240301`, owner: OWNER_AMAZON, created: '2024-03-01T00:00:00.000Z' },
  { id: 'ami-0d1a00000000000a2', name: `${DLAMI} 20240901`, owner: OWNER_AMAZON, created: '2024-09-01T00:00:00.000Z' },
  { id: 'ami-0d1a00000000000a3', name: `${DLAMI} 20241101`, owner: OWNER_AMAZON, created: '2024-11-01T00:00:00.000Z', architecture: 'arm64' },
  { id: 'ami-0b0b00000000000b1', name: `${UBUNTU}-20240301`, owner: OWNER_CANONICAL, created: '2024-03-01T00:00:00.000Z' },
  { id: 'ami-0b0b00000000000b2', name: `${UBUNTU}-20240901`, owner: OWNER_CANONICAL, created: '2024-09-01T00:00:00.000Z' },
  // Same names, newer, but not from the owners dstack trusts.
  { id: 'ami-0bad00000000000c1', name: `${DLAMI} 20250101`, owner: OWNER_STRANGER, created: '2025-01-01T00:00:00.000Z' },
  { id: 'ami-0bad00000000000c2', name: `${UBUNTU}-20250101`, owner: OWNER_STRANGER, created: '2025-01-01T00:00:00.000Z' },
];
/** What dstack must pick. */
export const NEWEST_DLAMI = 'ami-0d1a00000000000a2';
export const NEWEST_UBUNTU = 'ami-0b0b00000000000b2';

function motoAmi(a: TestAmi): Record<string, unknown> {
  return {
    ami_id: a.id,
    state: 'available',
    public: true,
    owner_id: a.owner,
    image_location: `${a.owner}/${a.name}`,
    root_device_type: 'ebs',
    root_device_name: '/dev/sda1',
    description: a.name,
    image_type: 'machine',
    platform: null,
    architecture: a.architecture ?? 'x86_64',
    name: a.name,
    virtualization_type: 'hvm',
    hypervisor: 'xen',
    creation_date: a.created,
  };
}

export interface Moto {
  /** `http://127.0.0.1:PORT`: what `AWS_ENDPOINT_URL` is set to. */
  readonly endpoint: string;
  readonly port: number;
  /** Wipes every resource (instances, key pairs, groups); the AMIs come back. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

/** The environment a client of this moto needs: endpoint, region and throwaway credentials. */
export function motoEnv(endpoint: string, region = 'us-east-1'): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: region,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
}

/** `python3 -m moto.server` with a fix for resets (see the file). */
const SERVER = fileURLToPath(new URL('./moto_server.py', import.meta.url));

const started = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of started) c.kill('SIGKILL');
});

/** Starts moto and resolves once it listens (it prints `Running on http://127.0.0.1:PORT`). */
export async function startMoto(options: { readonly amis?: readonly TestAmi[]; readonly timeoutMs?: number } = {}): Promise<Moto> {
  const dir = await mkdtemp(join(tmpdir(), 'dstack-moto-'));
  const amisPath = join(dir, 'amis.json');
  await writeFile(amisPath, JSON.stringify((options.amis ?? TEST_AMIS).map(motoAmi)));
  const child = spawn('python3', [SERVER, '-H', '127.0.0.1', '-p', '0'], {
    env: {
      ...process.env,
      MOTO_AMIS_PATH: amisPath,
      MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION: '1',
      MOTO_ENABLE_AMI_VALIDATION: '1',
      MOTO_ENABLE_KEYPAIR_VALIDATION: '1',
      PYTHONUNBUFFERED: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  const cleanupDir = (): void => rmSync(dir, { recursive: true, force: true });
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`moto did not start within ${options.timeoutMs ?? 30_000} ms:\n${output}`)), options.timeoutMs ?? 30_000);
    const onData = (d: Buffer): void => {
      output += d.toString('utf8');
      const m = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    const fail = (e: Error): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(e);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => fail(new Error(`moto exited (${code}) before it listened:\n${output}`)));
  });
  // Keep draining its request log, or moto blocks once the pipe is full.
  child.stdout!.resume();
  child.stderr!.resume();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    port,
    reset: async () => {
      const r = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
      if (!r.ok) throw new Error(`moto reset answered ${r.status}`);
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        await exited;
      }
      started.delete(child);
      cleanupDir();
    },
  };
}
