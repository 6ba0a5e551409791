/**
 * kill -9 of the CLI at seeded random points of a local run, a few trials (the full count is
 * scripts/kill-trials.ts): after each, the next `ps` leaves no container, no job folder, no run
 * shown running and no stack trace, and every unfinished job has its cause. The seed is in the
 * test's name so a failure is replayed with `node --import tsx scripts/kill-trials.ts 1 SEED`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, createProject } from '../helpers/cli.js';
import { TRIAL_WORKFLOWS, killTrial, prng } from '../helpers/kill-trials.js';
import { withTimeout } from '../helpers/timeout.js';

const SEED = 7;
const TRIALS = 3;
/** Up to the end of a typical local run of the trial job. */
const MAX_DELAY_MS = 3000;

test(
  `kill -9 at ${TRIALS} seeded random points (seed ${SEED}): nothing left, nothing shown running, causes recorded`,
  withTimeout(240_000, async () => {
    const random = prng(SEED);
    const p = await createProject({ workflows: TRIAL_WORKFLOWS });
    try {
      for (let i = 1; i <= TRIALS; i++) {
        const delay = Math.round(random() * MAX_DELAY_MS);
        const t = await killTrial(p, delay);
        assert.equal(t.problems, [], `trial ${i} (seed ${SEED}, kill after ${delay} ms): ${t.problems.join('; ')}`);
      }
    } finally {
      await p.cleanup();
    }
  }),
);

test('no container is left by this file', withTimeout(20_000, () => assertNoContainersLeft()));

test.run();
