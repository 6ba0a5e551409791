/**
 * The sweep's rule for leftovers (engine/sweep.ts): what a home left that no live run holds goes;
 * what a live run holds stays; an unfinished job whose dstack died keeps its running container and
 * its folder for the reconciler (ps shows that run running while its container runs).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Backend, BackendHandle, OwnedMachine } from '../../src/engine/backend.js';
import type { JobRecord, RunRecord, RunReader } from '../../src/engine/store/types.js';
import { sweepLeftovers } from '../../src/engine/sweep.js';

/** A pid no process has (pid_max is at most 2^22). */
const DEAD = 2 ** 22 + 1;

function storeOf(runs: Record<string, { status: string; pid: number }>, jobs: Record<string, { run: string; status: string }>): Pick<RunReader, 'getJob' | 'getRun'> {
  return {
    getRun: (name) => (runs[name] ? ({ name, ...runs[name] } as unknown as RunRecord) : undefined),
    getJob: (id) => (jobs[id] ? ({ id, ...jobs[id] } as unknown as JobRecord) : undefined),
  };
}

function backendOf(left: OwnedMachine[]): { backend: Backend; reaped: BackendHandle[] } {
  const reaped: BackendHandle[] = [];
  const backend = { id: 'local', leftovers: async () => left, reap: async (h: BackendHandle) => void reaped.push(h) } as unknown as Backend;
  return { backend, reaped };
}

const box = (id: string, state: string, job?: string, run?: string): OwnedMachine => ({ handle: { id }, id, state, ...(job ? { job } : {}), ...(run ? { run } : {}) });

test('leftovers: live runs kept (this process or another live one), dead or unknown ones swept, a dead run\'s running container left to ps', async () => {
  const store = storeOf(
    { 'live-run-1': { status: 'running', pid: process.pid }, 'dead-run-1': { status: 'running', pid: DEAD }, 'over-run-1': { status: 'failed', pid: DEAD } },
    { 'live-run-1/a': { run: 'live-run-1', status: 'running' }, 'dead-run-1/a': { run: 'dead-run-1', status: 'running' }, 'over-run-1/a': { run: 'over-run-1', status: 'failed' } },
  );
  const { backend, reaped } = backendOf([
    box('live-container', 'running', 'live-run-1/a'),
    box('live-folder', 'folder', 'live-run-1/a', 'live-run-1'),
    box('live-folder-guessed', 'folder', 'live-run-1/a/b', 'live-run-1'),
    box('dead-running', 'running', 'dead-run-1/a'),
    box('dead-folder', 'folder', 'dead-run-1/a', 'dead-run-1'),
    box('dead-created', 'created', 'dead-run-1/a'),
    box('over-running', 'running', 'over-run-1/a'),
    box('over-folder', 'folder', 'over-run-1/a', 'over-run-1'),
    box('unknown-job', 'created', 'gone-run-1/x'),
    box('unknown-folder', 'folder', 'gone-run-1/x', 'gone-run-1'),
    box('no-label', 'exited'),
  ]);
  const r = await sweepLeftovers(store, backend);
  assert.equal(r.kept.map((m) => m.id), ['dead-folder', 'dead-running', 'live-container', 'live-folder', 'live-folder-guessed']);
  assert.equal(r.swept.map((m) => [m.id, m.why]), [
    ['dead-created', `the dstack process that ran dead-run-1/a (pid ${DEAD}) is gone`],
    ['no-label', 'it names no job'],
    ['over-folder', 'its job over-run-1/a ended failed'],
    ['over-running', 'its job over-run-1/a ended failed'],
    ['unknown-folder', 'the run of gone-run-1/x is not in this dstack home'],
    ['unknown-job', 'its job gone-run-1/x is not in this dstack home'],
  ]);
  assert.equal(reaped.map((h) => h.id).sort(), r.swept.map((m) => m.id));
});

test('leftovers: a reap that fails is reported and tried again by the next command, never thrown', async () => {
  const store = storeOf({}, {});
  const backend = { id: 'local', leftovers: async () => [box('c', 'exited', 'gone-run-1/x')], reap: async () => Promise.reject(new Error('engine said no')) } as unknown as Backend;
  const r = await sweepLeftovers(store, backend);
  assert.equal(r.failed.map((m) => [m.id, m.error]), [['c', 'engine said no']]);
});

test.run();
