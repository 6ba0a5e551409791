import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import { secretMarker } from '../../src/engine/types.js';
import { interpolate, type InterpolationScope } from '../../src/engine/workflow/interpolate.js';

const scope: InterpolationScope = { variables: { epochs: '10', 'batch-size': '32' }, runName: 'wet-mangust-1', runArgs: "--x 'a b'" };
const origin = { root: '/nonexistent', workflow: 'train', field: 'commands.0' };
const run = (s: string): string => interpolate(s, scope, origin);

test('variables, short form, run name and args, with or without spaces', () => {
  assert.is(run('${{ variables.epochs }}/${{epochs}}/${{ batch-size }}'), '10/10/32');
  assert.is(run('${{ run.name }} ${{run.args}}'), "wet-mangust-1 --x 'a b'");
});

test('$$ is a literal $, a single $ is left for the shell', () => {
  assert.is(run('echo $$ $$HOME $PORT_0 ${HOME} $${{ epochs }}'), 'echo $ $HOME $PORT_0 ${HOME} ${{ epochs }}');
  assert.is(run('cost: 5$'), 'cost: 5$');
});

test('secrets become markers', () => {
  assert.is(run('token=${{ secrets.HF_TOKEN }}'), `token=${secretMarker('HF_TOKEN')}`);
});

function error(s: string): DstackError {
  try {
    run(s);
  } catch (e) {
    if (e instanceof DstackError) return e;
    throw e;
  }
  throw new Error('expected an error');
}

test('unknown variable is DS0008 with did you mean', () => {
  const e = error('python train.py --epochs ${{ variables.epoch }}');
  assert.is(e.code, 'DS0008');
  assert.is(e.message, 'unknown variable `epoch` in `commands[0]` of workflow `train`; did you mean `epochs`?');
});

test('unknown namespace and unterminated templates', () => {
  assert.is(error('${{ env.HOME }}').message, 'unknown name `env.HOME` in `commands[0]` of workflow `train`');
  assert.is(error('${{ run.nme }}').message, 'unknown name `run.nme` in `commands[0]` of workflow `train`; did you mean `run.name`?');
  assert.is(error('${{ epochs').code, 'DS0003');
});

test.run();
