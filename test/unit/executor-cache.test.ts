/**
 * The executor's caching through a recording backend: a dep with the same fingerprint is reused
 * without a machine, what changes a fingerprint (image digest, a dep's output) misses, and secret
 * values never reach one.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { type Manifest } from '../../src/artifacts/types.js';
import { RunControl } from '../../src/engine/control.js';
import type { RunEvent } from '../../src/engine/events.js';
import { executeRun } from '../../src/engine/executor.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { Store } from '../../src/engine/store/types.js';
import { asContentHash, secretMarker, type JobSpec } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';
import { recordingBackend, SNAPSHOT, spec, type Script } from '../helpers/recording-backend.js';

/** One run of `jobs` in an existing store (for caching across runs). */
async function runIn(
  store: Store,
  home: string,
  script: Script,
  jobs: { spec: JobSpec; deps: number[] }[],
  cache?: { rerun?: boolean; reuse?: boolean },
  secrets: (name: string) => string | undefined = () => undefined,
) {
  const steps: string[] = [];
  const events: RunEvent[] = [];
  const { run } = store.runs.createRun({ workflow: jobs.at(-1)!.spec.workflow, owner: 't', backend: 'test', repo: { root: home, isGit: false }, args: [], jobs });
  const outcome = await executeRun({
    store,
    artifacts: new LocalArtifactStore({ home }),
    backend: recordingBackend(script, steps),
    run,
    jobs: store.runs.jobs(run.name),
    snapshot: SNAPSHOT,
    ...(cache ? { cache } : {}),
    secrets,
    control: new RunControl(),
    onEvent: (e) => events.push(e),
  });
  return { run, outcome, steps, events, jobs: store.runs.jobs(run.name) };
}

const out = (content: string): Manifest => ({
  version: 1,
  entries: [{ type: 'file', path: 'out/x', size: 1, mode: 0o644, hash: asContentHash(content.repeat(64).slice(0, 64)) }],
  size: 1,
});

test(
  'caching: a dep with the same fingerprint is reused (no machine); the named workflow still runs; --reuse, --rerun',
  withTimeout(10_000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-exec-'));
    const store = openStore(home);
    try {
      const dag = [
        { spec: spec('a'), deps: [] },
        { spec: { ...spec('b'), deps: [{ kind: 'workflow' as const, name: 'a', location: { file: 'f', line: 1, col: 1 } }] }, deps: [0] },
      ];
      const script: Script = { outputs: { a: out('1') } };
      const first = await runIn(store, home, script, dag);
      assert.is(first.outcome.status, 'done');
      assert.ok(first.jobs.every((j) => j.fingerprint !== undefined && j.fingerprintParts?.version === 1));

      const second = await runIn(store, home, script, dag);
      assert.is(second.outcome.status, 'done');
      assert.not.ok(second.steps.some((s) => s.startsWith('a:')), `a got a machine: ${second.steps.join(' ')}`);
      assert.ok(second.steps.includes('b:start'), 'the named workflow runs');
      const [a2] = second.jobs;
      assert.is(a2!.status, 'done');
      assert.is(a2!.cachedFrom, `${first.run.name}/a`);
      assert.is(a2!.reason, undefined);
      assert.equal(a2!.manifest, out('1'));
      assert.equal(a2!.history.map((h) => h.status), ['submitted', 'done']);
      assert.ok(second.events.some((e) => e.type === 'job-reused' && e.from === `${first.run.name}/a`));
      assert.equal(second.steps.find((x) => x.startsWith('b:stage')), 'b:stage(1 deps)');

      // Reused from a reuse: still names the job that ran.
      const third = await runIn(store, home, script, dag, { reuse: true });
      assert.equal(third.steps, [], 'with --reuse nothing runs');
      assert.is(third.jobs[0]!.cachedFrom, `${first.run.name}/a`);
      assert.is(third.jobs[1]!.cachedFrom, `${second.run.name}/b`);

      // The run that really made a's artifacts removed: the next reuse names the record that holds them.
      store.runs.deleteRun(first.run.name);
      const fourth = await runIn(store, home, script, dag, { reuse: true });
      assert.equal(fourth.steps, [], 'the artifacts live on in the later records');
      assert.ok(fourth.events.some((e) => e.type === 'job-reused' && e.from === third.jobs[0]!.id), JSON.stringify(fourth.events));
      assert.not.ok(JSON.stringify(fourth.events).includes(first.run.name), 'no event names the removed run');

      const rerun = await runIn(store, home, script, dag, { rerun: true });
      assert.ok(rerun.steps.includes('a:start') && rerun.steps.includes('b:start'));
    } finally {
      store.close();
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'caching: a new image digest misses; a dep whose output changed makes its dependent miss, the same output hits',
  withTimeout(10_000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-exec-'));
    const store = openStore(home);
    try {
      const dep = { kind: 'workflow' as const, name: 'a', location: { file: 'f', line: 1, col: 1 } };
      const dag = [
        { spec: spec('a'), deps: [] },
        { spec: { ...spec('b'), deps: [dep] }, deps: [0] },
        { spec: { ...spec('c'), deps: [{ ...dep, name: 'b' }] }, deps: [1] },
      ];
      await runIn(store, home, { outputs: { a: out('1') } }, dag);
      const newImage = await runIn(store, home, { outputs: { a: out('1') }, digest: { img: 'sha256:other' } }, dag);
      assert.ok(newImage.steps.includes('a:start'), 'a new digest is a miss');

      // a runs again (named) and writes something else: b, which reads it, misses.
      await runIn(store, home, { outputs: { a: out('2') } }, [dag[0]!]);
      const changed = await runIn(store, home, { outputs: { a: out('2') } }, dag);
      assert.not.ok(changed.steps.some((s) => s.startsWith('a:')));
      assert.ok(changed.steps.includes('b:start'), 'b misses: its dep wrote something else');

      // a runs again and writes the same: b hits.
      await runIn(store, home, { outputs: { a: out('2') } }, [dag[0]!]);
      const same = await runIn(store, home, { outputs: { a: out('2') } }, dag);
      assert.equal(same.steps.filter((s) => s.endsWith(':start')), ['c:start']);
    } finally {
      store.close();
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'secret values never reach a fingerprint: a dep run with one value is reused with another',
  withTimeout(10_000, async () => {
    const home = mkdtempSync(join(tmpdir(), 'dstack-exec-'));
    const store = openStore(home);
    try {
      const dag = [
        { spec: spec('a', { TOKEN: secretMarker('TOKEN') }), deps: [] },
        { spec: { ...spec('b'), deps: [{ kind: 'workflow' as const, name: 'a', location: { file: 'f', line: 1, col: 1 } }] }, deps: [0] },
      ];
      const first = await runIn(store, home, {}, dag, undefined, () => 'value-one');
      const second = await runIn(store, home, {}, dag, undefined, () => 'value-two');
      assert.ok(first.steps.includes('a:start'));
      assert.not.ok(second.steps.includes('a:start'), 'a is reused although its secret changed');
      assert.is(second.jobs[0]!.fingerprint, first.jobs[0]!.fingerprint);
      const parts = JSON.stringify(first.jobs[0]!.fingerprintParts);
      for (const v of ['value-one', createHash('sha256').update('value-one').digest('hex')]) assert.not.ok(parts.includes(v), `${v} in the parts`);
    } finally {
      store.close();
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test.run();
