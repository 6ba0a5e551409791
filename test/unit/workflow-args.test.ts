import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import type { Project } from '../../src/engine/types.js';
import { declaredVariables, oneEditApart, parseRunArgs } from '../../src/engine/workflow/args.js';

const declared = new Set(['epochs', 'lr']);

test('declared variables are overrides; the rest are args in order', () => {
  assert.equal(parseRunArgs(['--epochs', '10', 'data.csv', '--lr=0.1', '--verbose', '-x', '3'], declared), {
    overrides: { epochs: '10', lr: '0.1' },
    args: ['data.csv', '--verbose', '-x', '3'],
  });
});

test('`--` hands the rest to args untouched', () => {
  assert.equal(parseRunArgs(['--epochs=1', '--', '--epochs', '3'], declared), { overrides: { epochs: '1' }, args: ['--epochs', '3'] });
});

test('an empty value with = is a value', () => {
  assert.equal(parseRunArgs(['--lr='], declared), { overrides: { lr: '' }, args: [] });
});

test('a declared flag without a value is DS0100', () => {
  try {
    parseRunArgs(['--epochs'], declared);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, DstackError);
    assert.is((e as DstackError).code, 'DS0100');
    assert.is((e as DstackError).message, '--epochs needs a value');
  }
});

test('declaredVariables: global plus the named workflows', () => {
  const project = {
    root: '/x',
    workflows: new Map(),
    variables: { global: { a: '1' }, perWorkflow: { train: { b: '2' }, other: { c: '3' } }, locations: new Map() },
    diagnostics: [],
  } satisfies Project;
  assert.equal([...declaredVariables(project, ['train', 'missing'])].sort(), ['a', 'b']);
});

function argError(tokens: string[], reserved: string[] = []): DstackError {
  try {
    parseRunArgs(tokens, new Set(['seed', 'epochs']), reserved);
  } catch (e) {
    if (e instanceof DstackError) return e;
    throw e;
  }
  throw new Error('expected an error');
}

test('a flag one edit away from a declared variable is DS0024 with did-you-mean and how to pass it anyway', () => {
  for (const tokens of [['--sede', '7'], ['--sed=7'], ['--seeds', '7'], ['--epoch', '3']]) {
    const e = argError(tokens);
    assert.is(e.code, 'DS0024');
    assert.is(e.exitCode, 2);
  }
  const e = argError(['--sede', '7']);
  assert.is(e.message, 'unknown argument `--sede`; did you mean `--seed` (the variable `seed`)?');
  assert.is(e.hint, 'to pass `--sede` to the workflow as it is, put it after `--`: dstack run WORKFLOW -- --sede …');
  assert.equal(parseRunArgs(['--', '--sede', '7'], new Set(['seed'])), { overrides: {}, args: ['--sede', '7'] });
  assert.equal(parseRunArgs(['--verbose', '--sd', 'x'], new Set(['seed'])), { overrides: {}, args: ['--verbose', '--sd', 'x'] });
});

test('a near miss of a dstack flag is DS0024 too', () => {
  const e = argError(['--dryrun'], ['--dry-run', '--remote', '-d']);
  assert.is(e.message, "unknown argument `--dryrun`; did you mean `--dry-run` (dstack's flag `--dry-run`)?");
  assert.equal(parseRunArgs(['--remotely'], new Set(), ['--remote']), { overrides: {}, args: ['--remotely'] });
});

test('oneEditApart: a change, an insertion, a deletion or a swap of neighbours', () => {
  assert.ok(oneEditApart('seed', 'sede'));
  assert.ok(oneEditApart('seed', 'seeds'));
  assert.ok(oneEditApart('seed', 'sed'));
  assert.ok(oneEditApart('seed', 'feed'));
  assert.ok(oneEditApart('ab', 'ba'));
  assert.not.ok(oneEditApart('seed', 'seed'));
  assert.not.ok(oneEditApart('seed', 'dees'));
  assert.not.ok(oneEditApart('seed', 'se'));
  assert.not.ok(oneEditApart('epochs', 'epcohz'));
});

test('a variable named __proto__ on the command line stays an own value', () => {
  const { overrides } = parseRunArgs(['--__proto__', 'x'], new Set(['__proto__']));
  assert.is(Object.getOwnPropertyDescriptor(overrides, '__proto__')?.value, 'x');
});

test.run();
