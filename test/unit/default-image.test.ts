/**
 * The default image table of provider bash and its digests file (src/engine/default-image-digests.json,
 * written by scripts/image-digests.mjs): the file names exactly the table's images, holds only
 * well-formed digests or null, and a digest makes the reference `name:tag@sha256:…` that Docker's
 * grammar accepts. The script itself is tested against a real registry in
 * test/integration/image-digests.test.ts.
 */
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_IMAGES, SHIPPED_DIGESTS, defaultImageFor, pin } from '../../src/engine/default-image.js';
import { imageReferenceProblem } from '../../src/engine/workflow/image-ref.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'ab'.repeat(32)}`;

test('the digests file names every image of the table and nothing else: a new python version needs its line (null until read)', () => {
  const table = Object.values(DEFAULT_IMAGES).flatMap((e) => [e.cpu, e.cuda]);
  assert.equal(Object.keys(SHIPPED_DIGESTS).sort(), [...table].sort());
});

test('the digests file holds a well-formed sha256 digest or null for each, and says where they were read', () => {
  const file = JSON.parse(readFileSync(new URL('../../src/engine/default-image-digests.json', import.meta.url), 'utf8')) as Record<string, unknown>;
  for (const [ref, d] of Object.entries(SHIPPED_DIGESTS)) assert.ok(d === null || /^sha256:[0-9a-f]{64}$/.test(d), `${ref}: ${String(d)}`);
  const pinned = Object.values(SHIPPED_DIGESTS).some((d) => d !== null);
  // A digest without the registry and the day it was read from is not one anybody can check.
  assert.is(typeof file.registry === 'string' && typeof file.read === 'string', pinned, JSON.stringify({ registry: file.registry, read: file.read }));
});

test('defaultImageFor: a digest pins the tag (name:tag@sha256:…), the CUDA variant its own; no digest or a malformed one leaves the tag alone', () => {
  const digests = { 'dstackai/miniforge:py3.9-0.2': D1, 'dstackai/miniforge:py3.9-0.2-cuda-11.1': D2, 'dstackai/miniforge:py3.10-0.2': 'sha256:abc' };
  assert.is(defaultImageFor('3.9', false, digests), `dstackai/miniforge:py3.9-0.2@${D1}`);
  assert.is(defaultImageFor('3.9', true, digests), `dstackai/miniforge:py3.9-0.2-cuda-11.1@${D2}`);
  assert.is(defaultImageFor('3.10', false, digests), 'dstackai/miniforge:py3.10-0.2');
  assert.is(defaultImageFor('3.11', false, { 'dstackai/miniforge:py3.11-0.2': null }), 'dstackai/miniforge:py3.11-0.2');
  assert.is(defaultImageFor('2.7', false, digests), undefined);
  assert.is(defaultImageFor('toString', false, digests), undefined);
  assert.is(pin('dstackai/miniforge:py3.9-0.2', { toString: D1 }), 'dstackai/miniforge:py3.9-0.2');
  for (const python of Object.keys(DEFAULT_IMAGES))
    for (const gpu of [false, true]) {
      const ref = defaultImageFor(python, gpu, Object.fromEntries(Object.values(DEFAULT_IMAGES).flatMap((e) => [[e.cpu, D1], [e.cuda, D2]])))!;
      assert.is(imageReferenceProblem(ref), undefined, ref);
      assert.match(ref, /^dstackai\/miniforge:py[\d.]+-0\.2(-cuda-11\.1)?@sha256:[0-9a-f]{64}$/);
    }
});

test.run();
