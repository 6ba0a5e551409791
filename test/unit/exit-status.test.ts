/** One exit status for a run, whether `run` saw it end or `logs -f` followed it. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { exitStatusOf } from '../../src/cli/exit-status.js';

test('done 0, failed 1, stopped or aborted 130 unless a job failed, the worst error code first', () => {
  assert.is(exitStatusOf('done', [{ status: 'done' }]), 0);
  assert.is(exitStatusOf('failed', [{ status: 'done' }, { status: 'failed' }]), 1);
  assert.is(exitStatusOf('stopped', [{ status: 'stopped' }]), 130);
  assert.is(exitStatusOf('aborted', [{ status: 'aborted' }, { status: 'failed' }]), 1);
  assert.is(exitStatusOf('interrupted', [{ status: 'interrupted' }]), 1);
  assert.is(exitStatusOf('failed', [{ status: 'failed', errorCode: 'DS0320' }]), 3, 'a full disk is the machine: 3');
  assert.is(exitStatusOf('failed', [{ status: 'failed', errorCode: 'DS0016' }, { status: 'failed', errorCode: 'DS0201' }]), 3, 'the worst of the errors');
  assert.is(exitStatusOf('failed', [{ status: 'failed', errorCode: 'DS0016' }]), 2);
});

test.run();
