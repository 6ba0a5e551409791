import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError, formatError } from '../../src/engine/errors.js';

test('formatError shows code, location, the line and a caret under the column', () => {
  const e = new DstackError('DS0011', "invalid memory size '8XB'", {
    location: { file: '.dstack/workflows.yaml', line: 7, col: 15 },
    lineText: '      memory: 8XB',
    hint: 'expected a size like 8GB, 512MiB',
  });
  assert.is(
    formatError(e),
    [
      "error DS0011: invalid memory size '8XB'",
      '  --> .dstack/workflows.yaml:7:15',
      '  |',
      '7 |       memory: 8XB',
      '  |               ^',
      '  = expected a size like 8GB, 512MiB',
    ].join('\n'),
  );
  assert.is(e.exitCode, 2);
});

test.run();
