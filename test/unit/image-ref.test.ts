import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { imageReferenceProblem } from '../../src/engine/workflow/image-ref.js';

test('references Docker accepts', () => {
  for (const ref of [
    'ubuntu',
    'python:3.11-slim',
    'dstack/python:3.11-ml',
    'library/busybox:1.36.1',
    'ghcr.io/my-organization/top-secret-image:v1',
    'localhost:5000/team/img',
    'registry.example.com:5000/a/b/c:TAG_1.0',
    'MyRegistry/img', // an upper-case first component is a host, as Docker reads it
    '[::1]:5000/img:latest',
    'a__b/c--d/e.f_g',
    `ubuntu@sha256:${'0123456789abcdef'.repeat(4)}`,
    `ubuntu:22.04@sha256:${'a'.repeat(64)}`,
  ])
    assert.is(imageReferenceProblem(ref), undefined, ref);
});

test('references Docker refuses, each with its reason', () => {
  assert.is(imageReferenceProblem(''), 'the image name is empty');
  assert.is(imageReferenceProblem('  '), 'the image name is empty');
  assert.is(imageReferenceProblem('a b c'), 'an image name cannot contain spaces');
  assert.is(imageReferenceProblem('Ubuntu'), 'an image name must be lower case (a registry host before the first `/` may not be)');
  assert.is(imageReferenceProblem('x'.repeat(100_000)), 'the image name is 100000 characters long; Docker allows 255 for the name');
  assert.is(imageReferenceProblem('x'.repeat(300)), 'the image name is longer than 255 characters');
  for (const ref of ['ubuntu:', ':tag', 'a//b', 'a/-b', 'a_', 'ubuntu@sha256:abc', `ubuntu:${'t'.repeat(129)}`, 'a..b', 'a___b', '-a'])
    assert.match(imageReferenceProblem(ref) ?? 'accepted', /not a valid image reference/, ref);
});

test('long almost-valid names are refused (patterns without nested ambiguity: no catastrophic backtracking)', () => {
  // Under the length cap, so the pattern runs: with the `[-]*` separator of older parsers, these hang.
  for (const ref of [`${'a-'.repeat(200)}!`, `${'a'.repeat(250)}_!`, `${'a.'.repeat(120)}/!`])
    assert.match(imageReferenceProblem(ref) ?? 'accepted', /not a valid image reference/);
});

test.run();
