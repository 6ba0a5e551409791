import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import type { Project } from '../../src/engine/types.js';
import { declaredVariables, parseRunArgs } from '../../src/engine/workflow/args.js';

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

test.run();
