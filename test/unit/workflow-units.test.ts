import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseSize } from '../../src/engine/workflow/units.js';
import { shellQuote, splitShellWords } from '../../src/engine/workflow/shell.js';

test('decimal and binary units', () => {
  assert.is(parseSize('16GB'), 16e9);
  assert.is(parseSize('512MB'), 512e6);
  assert.is(parseSize('1KB'), 1000);
  assert.is(parseSize('2TB'), 2e12);
  assert.is(parseSize('8GiB'), 8 * 2 ** 30);
  assert.is(parseSize('512MiB'), 512 * 2 ** 20);
  assert.is(parseSize('1KiB'), 1024);
  assert.is(parseSize('1TiB'), 2 ** 40);
  assert.is(parseSize('100B'), 100);
});

test('case, spaces and fractions', () => {
  assert.is(parseSize('16gb'), 16e9);
  assert.is(parseSize(' 1.5 GB '), 1.5e9);
  assert.is(parseSize('0.5GiB'), 2 ** 29);
});

test('no unit, unknown units and single letters are refused', () => {
  for (const bad of ['8XB', '8', '1024', '8G', '8Gi', 'GB', '', '-1GB', '1e3GB', '16 G B']) assert.is(parseSize(bad), undefined, bad);
});

test('shell words: quotes and escapes', () => {
  assert.equal(splitShellWords('/bin/bash -i -c'), ['/bin/bash', '-i', '-c']);
  assert.equal(splitShellWords(`python -c "print('a b')" 'x y' a\\ b ""`), ['python', '-c', "print('a b')", 'x y', 'a b', '']);
  assert.equal(splitShellWords('"a \\"q\\" \\n"'), ['a "q" \\n']);
  assert.is(splitShellWords('echo "unterminated'), undefined);
});

test('shell quoting only where needed', () => {
  assert.is(shellQuote('--lr=0.1'), '--lr=0.1');
  assert.is(shellQuote('a b'), "'a b'");
  assert.is(shellQuote("it's"), `'it'\\''s'`);
  assert.is(shellQuote(''), "''");
  assert.is(shellQuote('$HOME'), "'$HOME'");
});

test.run();
