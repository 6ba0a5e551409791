import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { choosePlacement } from '../../src/engine/placement.js';

test('the command line wins; then the workflow; local by default', () => {
  assert.equal(choosePlacement(undefined, undefined), { kind: 'local' });
  assert.equal(choosePlacement('local', undefined), { kind: 'local' });
  assert.equal(choosePlacement('remote', undefined), { kind: 'remote', why: 'workflow' });
  assert.equal(choosePlacement('local', ''), { kind: 'remote', why: 'command line' });
  assert.equal(choosePlacement('local', 'gpu-pool'), { kind: 'remote', name: 'gpu-pool', why: 'command line' });
  assert.equal(choosePlacement('remote', 'lab'), { kind: 'remote', name: 'lab', why: 'command line' });
  assert.equal(choosePlacement(undefined, ''), { kind: 'remote', why: 'command line' });
});

test.run();
