/**
 * Fingerprints are pure: the same inputs give the same fingerprint, every part that can change a
 * job's output changes it, and what cannot (memory, cpu, secrets' values) does not.
 */
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Manifest, ManifestEntry } from '../../src/artifacts/types.js';
import { FINGERPRINT_VERSION, fingerprintOf, fingerprintParts, inputsHash, manifestDigest, selectInputs, treeHashOf, type FingerprintInput } from '../../src/engine/fingerprint.js';
import { asContentHash, secretMarker, type Fingerprint, type JobSpec } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';

const H = (c: string) => asContentHash(c.repeat(64).slice(0, 64));
const file = (path: string, hash = H('a'), mode = 0o644): ManifestEntry => ({ type: 'file', path, size: 1, mode, hash });
const manifest = (...entries: ManifestEntry[]): Manifest => ({ version: 1, entries, size: entries.length });

const spec: JobSpec = jobSpec({
  workflow: 'train',
  image: 'dstack/python:3.11-ml',
  command: ['/bin/sh', '-c', 'python train.py'],
  env: { MODE: 'fast', TOKEN: secretMarker('TOKEN') },
  artifacts: [{ path: 'model', mount: false }],
  resources: { cpu: 2, memory: 1e9 },
  variables: { hidden: '64' },
  args: ['--seed', '1'],
});

const base: FingerprintInput = {
  spec,
  imageDigest: 'sha256:1111',
  inputs: { hash: H('b') },
  deps: [{ workflow: 'data', fingerprint: 'f'.repeat(64) as Fingerprint, manifest: manifest(file('data/x')) }],
  tags: [{ name: 'golden', manifest: manifest(file('ref/y')) }],
};
const fp = (input: FingerprintInput) => fingerprintOf(fingerprintParts(input));
const withSpec = (s: Partial<JobSpec>): FingerprintInput => ({ ...base, spec: { ...spec, ...s } });

test('same inputs, same fingerprint; versioned and hex', () => {
  const a = fingerprintParts(base);
  assert.is(a.version, FINGERPRINT_VERSION);
  assert.is(fp(base), fp({ ...base, spec: { ...spec, env: { TOKEN: secretMarker('TOKEN'), MODE: 'fast' } } }), 'key order does not matter');
  assert.match(fp(base), /^[0-9a-f]{64}$/);
  assert.equal(Object.keys(a.parts).sort(), ['args', 'artifacts', 'command', 'dep.data', 'env.MODE', 'env.TOKEN', 'image', 'inputs', 'resources', 'tag.golden', 'var.hidden', 'working_dir']);
  assert.equal(a.values, { image: 'dstack/python:3.11-ml', 'var.hidden': '64', args: '--seed 1', working_dir: '' });
});

test('each part changes the fingerprint', () => {
  const changes: [string, FingerprintInput][] = [
    ['image digest', { ...base, imageDigest: 'sha256:2222' }],
    ['command', withSpec({ command: ['/bin/sh', '-c', 'python train2.py'] })],
    ['entrypoint', withSpec({ entrypoint: ['python'] })],
    ['provider', withSpec({ provider: 'docker' })],
    ['env value', withSpec({ env: { MODE: 'slow', TOKEN: secretMarker('TOKEN') } })],
    ['env name added', withSpec({ env: { ...spec.env, MORE: '1' } })],
    ['secret name', withSpec({ env: { MODE: 'fast', TOKEN: secretMarker('OTHER') } })],
    ['variable', withSpec({ variables: { hidden: '32' } })],
    ['args', withSpec({ args: ['--seed', '2'] })],
    ['working dir', withSpec({ workingDir: 'sub' })],
    ['gpu count', withSpec({ resources: { ...spec.resources, gpu: { count: 1 } } })],
    ['gpu name', withSpec({ resources: { gpu: { count: 1, name: 'A100' } } })],
    ['artifacts', withSpec({ artifacts: [{ path: 'model2', mount: false }] })],
    ['inputs', { ...base, inputs: { hash: H('c') } }],
    ['dep fingerprint', { ...base, deps: [{ ...base.deps[0]!, fingerprint: 'e'.repeat(64) as Fingerprint }] }],
    ['dep artifacts', { ...base, deps: [{ ...base.deps[0]!, manifest: manifest(file('data/x', H('d'))) }] }],
    ['tag artifacts', { ...base, tags: [{ name: 'golden', manifest: manifest(file('ref/y', H('d'))) }] }],
  ];
  const seen = new Set([fp(base)]);
  for (const [what, input] of changes) {
    const f = fp(input);
    assert.ok(!seen.has(f), `${what} did not change the fingerprint`);
    seen.add(f);
  }
});

test('what cannot change results leaves it alone: cpu, memory, shm, interruptible, cache, ports, the listing object', () => {
  const same: [string, FingerprintInput][] = [
    ['cpu and memory', withSpec({ resources: { cpu: 16, memory: 64e9, shmSize: 1e9, interruptible: true } })],
    ['gpu count 0', withSpec({ resources: { gpu: { count: 0 } } })],
    ['cache paths', withSpec({ cache: ['~/.cache/pip'] })],
    ['ports', withSpec({ ports: 2 })],
    ['artifact mount flag', withSpec({ artifacts: [{ path: 'model', mount: true }] })],
    ['where the listing is stored', { ...base, inputs: { hash: H('b'), listing: H('9') } }],
  ];
  for (const [what, input] of same) assert.is(fp(input), fp(base), `${what} changed the fingerprint`);
});

test('a secret counts by its name only: its part is the hash of its marker, which holds no value', () => {
  // The spec holds `\0secret:NAME\0` wherever a secret is used; its value is revealed only into the
  // container's env (the executor test shows two values give one fingerprint).
  const parts = fingerprintParts(base);
  assert.is(parts.parts['env.TOKEN'], createHash('sha256').update(secretMarker('TOKEN')).digest('hex'));
  assert.is(parts.parts['env.MODE'], createHash('sha256').update('fast').digest('hex'), 'a plain value is hashed as it is');
  assert.not.ok(Object.keys(parts.values ?? {}).some((k) => k.startsWith('env.')), 'env values are never kept as values');
  assert.is.not(fp(withSpec({ env: { MODE: 'fast', TOKEN: secretMarker('OTHER') } })), fp(base), 'another secret is another fingerprint');
});

test('tree hash: order-independent, covers path, mode, content and link targets', () => {
  const a = [file('a'), file('b/c', H('c'))];
  assert.is(treeHashOf(a), treeHashOf([...a].reverse()));
  assert.is.not(treeHashOf(a), treeHashOf([file('a'), file('b/c', H('d'))]));
  assert.is.not(treeHashOf(a), treeHashOf([file('a', H('a'), 0o755), file('b/c', H('c'))]));
  assert.is.not(treeHashOf(a), treeHashOf([file('a2'), file('b/c', H('c'))]));
  const link = (target: string): ManifestEntry => ({ type: 'symlink', path: 'l', target });
  assert.is.not(treeHashOf([link('a')]), treeHashOf([link('b')]));
  assert.is(manifestDigest(manifest(...a)), treeHashOf(a));
});

test('inputs: a file or a folder selects itself and what is under it, nothing else', () => {
  const snap = [file('a.py'), file('data/x'), file('data/y'), file('database.txt'), file('src/m.py')];
  assert.equal(selectInputs(snap, undefined), snap);
  assert.equal(selectInputs(snap, ['./data/', 'a.py']).map((e) => e.path), ['a.py', 'data/x', 'data/y']);
  assert.equal(selectInputs(snap, ['.']), snap);
  // A change outside the selection leaves the hash alone; inside, it changes it.
  const outside = snap.map((e) => (e.path === 'src/m.py' ? file('src/m.py', H('z')) : e));
  const inside = snap.map((e) => (e.path === 'data/y' ? file('data/y', H('z')) : e));
  assert.is(inputsHash(outside, ['data']), inputsHash(snap, ['data']));
  assert.is.not(inputsHash(inside, ['data']), inputsHash(snap, ['data']));
});

test.run();
