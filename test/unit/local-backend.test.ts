/** The local backend's pure parts: container options, cache mounts, the deps' merged tree, the demuxer, DOCKER_HOST, image names. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cacheMounts, createOptions } from '../../src/backends/docker/container.js';
import { mergeDeps, topLevel } from '../../src/backends/docker/deps.js';
import { demuxer } from '../../src/backends/docker/demux.js';
import { makeManifest } from '../../src/artifacts/manifest.js';
import type { Manifest, ManifestEntry } from '../../src/artifacts/types.js';
import { asContentHash } from '../../src/engine/types.js';
import { DockerApiError, endpointFromEnv } from '../../src/backends/docker/docker.js';
import { startError } from '../../src/backends/docker/job-container.js';
import { registryAuthHeader, splitImage } from '../../src/backends/docker/pull.js';
import { DstackError } from '../../src/engine/errors.js';
import type { JobSpec } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';

const spec = (o: Partial<JobSpec> = {}): JobSpec => jobSpec({ workflow: 'train', image: 'python:3.11', command: ['/bin/sh', '-c', 'python train.py'], ...o });

test('createOptions: limits, gpu, ports, working dir, labels, env', () => {
  const o = createOptions({
    spec: spec({
      workingDir: 'src',
      resources: { cpu: 1.5, memory: 2 ** 30, shmSize: 2 ** 26, gpu: { count: 2 } },
      cache: ['~/.cache/pip'],
    }),
    labels: { 'dstack.run': 'r' },
    workflowDir: '/h/jobs/r_train/workflow',
    cacheDir: '/h/cache/abc/train',
    env: { A: '1' },
    ports: [40001],
  });
  assert.equal(o.Cmd, ['/bin/sh', '-c', 'python train.py']);
  assert.is(o.Entrypoint, undefined);
  assert.is(o.WorkingDir, '/workflow/src');
  assert.equal(o.Env, ['A=1', 'PORT_0=40001', 'TINI_KILL_PROCESS_GROUP=1', 'HOME=/root']);
  assert.equal(o.Labels, { 'dstack.run': 'r' });
  assert.equal(o.ExposedPorts, { '40001/tcp': {} });
  const hc = o.HostConfig ?? {};
  assert.equal(hc.Binds, ['/h/jobs/r_train/workflow:/workflow', '/h/cache/abc/train/root%2F.cache%2Fpip:/root/.cache/pip']);
  assert.is(hc.Memory, 2 ** 30);
  assert.is(hc.NanoCpus, 1_500_000_000);
  assert.is(hc.ShmSize, 2 ** 26);
  assert.equal(hc.DeviceRequests, [{ Driver: '', Count: 2, Capabilities: [['gpu']] }]);
  assert.equal(hc.PortBindings, { '40001/tcp': [{ HostIp: '127.0.0.1', HostPort: '40001' }] });
});

test('createOptions: no limits, no ports → none set; the image command kept', () => {
  const o = createOptions({ spec: spec({ command: undefined }), labels: {}, workflowDir: '/w', cacheDir: '/c', env: {}, ports: [] });
  assert.is(o.Cmd, undefined);
  assert.is(o.WorkingDir, '/workflow');
  assert.equal(o.HostConfig, { Init: true, Binds: ['/w:/workflow'] });
  assert.is(o.ExposedPorts, undefined);
});

test('createOptions: an init runs the job, and sends a stop to its whole process group', () => {
  const o = createOptions({ spec: spec(), labels: {}, workflowDir: '/w', cacheDir: '/c', env: { B: '2' }, ports: [] });
  assert.is(o.HostConfig?.Init, true);
  assert.equal(o.Env, ['B=2', 'TINI_KILL_PROCESS_GROUP=1']);
  // A job that sets it itself keeps its own choice.
  const own = createOptions({ spec: spec(), labels: {}, workflowDir: '/w', cacheDir: '/c', env: { TINI_KILL_PROCESS_GROUP: '' }, ports: [] });
  assert.equal(own.Env, ['TINI_KILL_PROCESS_GROUP=']);
});

test('createOptions: deps are read-only bind mounts under /workflow, as Mounts (a `:` in a path is fine)', () => {
  const o = createOptions({
    spec: spec(),
    labels: {},
    workflowDir: '/w',
    cacheDir: '/c',
    env: {},
    ports: [],
    depMounts: [
      { source: '/h/deps/data', path: 'data' },
      { source: '/h/deps/out/a:b.txt', path: 'out/a:b.txt' },
    ],
  });
  assert.equal(o.HostConfig?.Binds, ['/w:/workflow']);
  assert.equal(o.HostConfig?.Mounts, [
    { Type: 'bind', Source: '/h/deps/data', Target: '/workflow/data', ReadOnly: true },
    { Type: 'bind', Source: '/h/deps/out/a:b.txt', Target: '/workflow/out/a:b.txt', ReadOnly: true },
  ]);
});

const hash = (c: string): ReturnType<typeof asContentHash> => asContentHash(c.repeat(64));
const file = (path: string, c = 'a'): ManifestEntry => ({ type: 'file', path, size: 1, mode: 0o644, hash: hash(c) });
const dir = (path: string): ManifestEntry => ({ type: 'dir', path, mode: 0o755 });
const link = (path: string, target: string): ManifestEntry => ({ type: 'symlink', path, target });
const m = (...entries: ManifestEntry[]): Manifest => makeManifest(entries);
const flat = (tree: ReadonlyMap<string, ManifestEntry>): string[] =>
  [...tree.values()].map((e) => `${e.type}:${e.path}${e.type === 'file' ? `:${e.hash.slice(0, 1)}` : ''}`).sort();

test('mergeDeps: later deps win on a path; a file replaces a folder; a folder replaces a file on the way', () => {
  const tree = mergeDeps([
    m(dir('data'), file('data/a'), file('data/b'), file('notes', 'a'), file('out', 'a'), dir('gone'), file('gone/x')),
    m(file('notes', 'b'), dir('out/sub'), file('out/sub/y', 'b'), file('gone', 'c'), file('data/b', 'd')),
  ]);
  assert.equal(flat(tree), [
    'dir:data',
    'dir:out/sub',
    'file:data/a:a',
    'file:data/b:d',
    'file:gone:c',
    'file:notes:b',
    'file:out/sub/y:b',
  ]);
});

test('topLevel: only the outermost paths are mounted; nested deps merge into one tree', () => {
  const tree = mergeDeps([m(dir('data'), file('data/a')), m(dir('data/sub'), file('data/sub/b')), m(file('out/x.txt'), link('latest', 'data/a'))]);
  assert.equal(
    topLevel(tree).map((e) => `${e.type}:${e.path}`),
    ['dir:data', 'symlink:latest', 'file:out/x.txt'],
  );
  assert.equal(topLevel(mergeDeps([])), []);
});

test('mergeDeps: an entry that escapes is refused (DS0302)', () => {
  try {
    mergeDeps([{ version: 1, entries: [file('../x')], size: 1 }]);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, DstackError);
    assert.is((e as DstackError).code, 'DS0302');
  }
});

test('cacheMounts: ~, absolute and relative paths; duplicates and the root dropped; each a leaf of its own on the host', () => {
  assert.equal(cacheMounts(['~/.cache/pip', '/data/', 'models', './models', '~', '/', '.'], '/home/me'), [
    { target: '/home/me/.cache/pip', source: 'home%2Fme%2F.cache%2Fpip' },
    { target: '/data', source: 'data' },
    { target: '/workflow/models', source: 'workflow%2Fmodels' },
    { target: '/home/me', source: 'home%2Fme' },
  ]);
  // Never one inside another (a job could plant a link on the way to the other), and never the same for two paths.
  assert.equal(
    cacheMounts(['/a%2Fb', '/a/b'], '/r').map((m) => m.source),
    ['a%252Fb', 'a%2Fb'],
  );
});

test('demuxer: frames split across chunks and several frames in one chunk', () => {
  const got: [string, string][] = [];
  const push = demuxer((s, c) => got.push([s, c.toString()]));
  const frame = (t: number, text: string): Buffer => {
    const h = Buffer.alloc(8);
    h[0] = t;
    h.writeUInt32BE(Buffer.byteLength(text), 4);
    return Buffer.concat([h, Buffer.from(text)]);
  };
  const all = Buffer.concat([frame(1, 'out1\n'), frame(2, 'err\n'), frame(1, 'out2\n')]);
  push(all.subarray(0, 3));
  push(all.subarray(3, 15));
  push(all.subarray(15));
  assert.equal(got, [
    ['stdout', 'out1\n'],
    ['stderr', 'err\n'],
    ['stdout', 'out2\n'],
  ]);
});

test('endpointFromEnv: unix, tcp, default socket, ssh refused', () => {
  assert.equal(endpointFromEnv({ DOCKER_HOST: 'unix:///tmp/d.sock' }), { describe: 'unix:///tmp/d.sock', socketPath: '/tmp/d.sock' });
  const tcp = endpointFromEnv({ DOCKER_HOST: 'tcp://10.0.0.2:2375' });
  assert.is(tcp.describe, 'tcp://10.0.0.2:2375');
  assert.is(tcp.host, '10.0.0.2');
  assert.is(tcp.port, 2375);
  assert.is(tcp.tls, undefined);
  assert.ok(endpointFromEnv({}).socketPath?.endsWith('docker.sock'));
  try {
    endpointFromEnv({ DOCKER_HOST: 'ssh://me@host' });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, DstackError);
    assert.is((e as DstackError).code, 'DS0200');
  }
});

test('splitImage: tags, registries with ports, digests', () => {
  assert.equal(splitImage('ubuntu'), { name: 'ubuntu', tag: 'latest' });
  assert.equal(splitImage('python:3.11'), { name: 'python', tag: '3.11' });
  assert.equal(splitImage('localhost:5000/x/y'), { name: 'localhost:5000/x/y', tag: 'latest' });
  assert.equal(splitImage('localhost:5000/x/y:v2'), { name: 'localhost:5000/x/y', tag: 'v2' });
  assert.equal(splitImage('x@sha256:abc'), { name: 'x', tag: 'sha256:abc' });
  // A pinned reference (the default image once its digest is read): the digest, never the tag.
  assert.equal(splitImage('dstackai/miniforge:py3.9-0.2@sha256:abc'), { name: 'dstackai/miniforge', tag: 'sha256:abc' });
  assert.equal(splitImage('localhost:5000/x/y:v2@sha256:abc'), { name: 'localhost:5000/x/y', tag: 'sha256:abc' });
  assert.equal(splitImage('localhost:5000/x/y@sha256:abc'), { name: 'localhost:5000/x/y', tag: 'sha256:abc' });
});

test('an engine with no docker-init: DS0130 says where and how to get one; other start errors stay DS0203', () => {
  // moby's message when HostConfig.Init is asked of an engine that has no init binary.
  const missing = new DockerApiError(500, 'exec: "docker-init": executable file not found in $PATH');
  const here = startError(missing, 'r/train', []) as DstackError;
  assert.is(here.code, 'DS0130');
  assert.is(here.message, 'the Docker engine here has no init program (docker-init), which job r/train runs under so that a stop reaches it: exec: "docker-init": executable file not found in $PATH');
  assert.match(here.hint ?? '', '--init-path');
  const remote = startError(missing, 'r/train', [], 'on root@gpu1:22') as DstackError;
  assert.ok(remote.message.startsWith('the Docker engine on root@gpu1:22 has no init program'), remote.message);
  assert.is((startError(new DockerApiError(500, 'something else'), 'r/train', []) as DstackError).code, 'DS0203');
});

test('X-Registry-Auth is URL-safe base64 with its padding, whatever the length (the engine reads nothing otherwise)', () => {
  for (const password of ['p', 'pw', 'pwd', 'pwd?>', 'ü~~~']) {
    const header = registryAuthHeader({ username: 'alice', password }, '127.0.0.1:5000/private/app');
    assert.is(header.length % 4, 0, `padded for a password of ${password.length}`);
    assert.match(header, /^[A-Za-z0-9_-]+=*$/);
    assert.equal(JSON.parse(Buffer.from(header, 'base64url').toString('utf8')), { username: 'alice', password, serveraddress: '127.0.0.1:5000' });
  }
  const hub = JSON.parse(Buffer.from(registryAuthHeader({ username: 'u', password: 'p' }, 'library/python'), 'base64url').toString('utf8')) as { serveraddress: string };
  assert.is(hub.serveraddress, 'https://index.docker.io/v1/');
});

test.run();
