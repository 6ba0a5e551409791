/**
 * Which artifact folders a job finds ready in /workflow (dstack 0.7 made them): folders made, a
 * file's folder made but not the file, nothing over the code's own files, nothing under a dep's
 * read-only paths.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { artifactFolders } from '../../src/backends/docker/artifact-dirs.js';
import { makeManifest } from '../../src/artifacts/manifest.js';
import type { ManifestEntry } from '../../src/artifacts/types.js';
import { asContentHash, type ArtifactSpec } from '../../src/engine/types.js';

const art = (...paths: string[]): ArtifactSpec[] => paths.map((path) => ({ path, mount: false }));
const file = (path: string): ManifestEntry => ({ type: 'file', path, size: 1, mode: 0o644, hash: asContentHash('a'.repeat(64)) });
const dir = (path: string): ManifestEntry => ({ type: 'dir', path, mode: 0o755 });
const none = { snapshot: makeManifest([]), depPaths: [] };

test('folders are made, nested ones with their parents; the whole /workflow is not a folder to make', () => {
  assert.equal(artifactFolders(art('output', 'lightning_logs', 'runs/exp1', '.cache', ''), none), ['.cache', 'lightning_logs', 'output', 'runs/exp1']);
});

test('a name with an extension is a file: only its folder is made', () => {
  assert.equal(artifactFolders(art('model.pt', 'out/x.txt', 'ckpt/weights.tar.gz'), none), ['ckpt', 'out']);
});

test('nothing over the code: a file on the way (or at the path) leaves the folder to the job; code folders are fine', () => {
  const snapshot = makeManifest([file('notes'), dir('src'), file('src/main.py'), file('data')]);
  assert.equal(artifactFolders(art('notes', 'data/clean', 'src/out', 'fresh'), { snapshot, depPaths: [] }), ['fresh', 'src/out']);
});

test("nothing at or under a dep's path (mounted read-only); beside it is fine", () => {
  assert.equal(artifactFolders(art('data', 'data/more', 'data2', 'out'), { snapshot: makeManifest([]), depPaths: ['data'] }), ['data2', 'out']);
});

test('a path outside /workflow (/opt/venv, ~/.cache/x) makes no folder, and the walk ends', () => {
  const outside: ArtifactSpec[] = ['/root/.cache/pip', '/opt/venv', '~/.cache/x'].map((path) => ({ path, mount: false, absolute: true }));
  assert.equal(artifactFolders([...outside, ...art('out')], none), ['out']);
});

test.run();
