// Seeded kill -9 trials of a local run (issue 7, Bars: >= 25 trials). Each trial SIGKILLs
// `dstack run job` after a random delay, lets what it left end by itself, runs one `dstack ps`, and
// checks: no container, no job folder, no run shown running, no stack trace, causes recorded
// (test/helpers/kill-trials.ts). Trial i of seed S uses the i-th delay of S's sequence.
//
// Usage: node --import tsx scripts/kill-trials.ts [TRIALS=25] [SEED=1] [MAX_DELAY_MS=3000]
// Prints one line per trial and a summary by where the kill landed; exits 1 if anything was left.
import { createProject } from '../test/helpers/cli.js';
import { TRIAL_WORKFLOWS, killTrial, prng } from '../test/helpers/kill-trials.js';

const [trials, seed, maxDelay] = [Number(process.argv[2] ?? 25), Number(process.argv[3] ?? 1), Number(process.argv[4] ?? 3000)];
const random = prng(seed);
const p = await createProject({ workflows: TRIAL_WORKFLOWS });
const byStatus = new Map<string, number>();
let failedTrials = 0;
let killed = 0;
try {
  for (let i = 1; i <= trials; i++) {
    const delay = Math.round(random() * maxDelay);
    const t = await killTrial(p, delay);
    if (t.killed) killed++;
    byStatus.set(t.status, (byStatus.get(t.status) ?? 0) + 1);
    if (t.problems.length) failedTrials++;
    const how = t.killed ? `killed after ${delay} ms` : `ended by itself before ${delay} ms`;
    console.log(`trial ${String(i).padStart(2)} (seed ${seed}): ${how}; run ${t.status}; ${t.problems.length ? `PROBLEMS: ${t.problems.join('; ')}` : 'nothing left'}`);
  }
} finally {
  await p.cleanup();
}
const statuses = [...byStatus].map(([s, n]) => `${s} ${n}`).join(', ');
console.log(`\n${trials} trials (seed ${seed}, delays 0-${maxDelay} ms): ${killed} killed mid-run; runs afterwards: ${statuses}; trials with something left or wrong: ${failedTrials}`);
process.exit(failedTrials ? 1 : 0);
