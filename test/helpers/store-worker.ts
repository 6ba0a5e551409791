/**
 * Child process for test/integration/store-concurrency.test.ts:
 *   node --import tsx test/helpers/store-worker.ts HOME COUNT START_AT_MS
 * Waits until START_AT_MS so every worker opens the (fresh) store at the same moment, creates COUNT
 * runs with names drawn from only four prefixes (so the counters are fought over), and prints the
 * names as a JSON array on stdout.
 */
import { openStore } from '../../src/engine/store/sqlite.js';
import { jobSpec } from './spec.js';

const [home, countArg, startArg] = process.argv.slice(2);
if (!home || !countArg || !startArg) throw new Error('usage: store-worker.ts HOME COUNT START_AT_MS');

const startAt = Number(startArg);
const wait = startAt - Date.now() - 20;
if (wait > 0) await new Promise((r) => setTimeout(r, wait));
while (Date.now() < startAt); // timers are coarse; spin the last few ms so the workers start together

const store = openStore(home, { random: () => (Math.random() < 0.5 ? 0 : 0.999) });
const names: string[] = [];
for (let i = 0; i < Number(countArg); i++) {
  const { run } = store.runs.createRun({
    workflow: 'train',
    owner: `worker-${process.pid}`,
    backend: 'local',
    repo: { root: '/tmp/proj', isGit: false },
    args: [],
    jobs: [
      {
        spec: jobSpec({ workflow: 'train', image: 'python:3.10' }),
        deps: [],
      },
    ],
  });
  names.push(run.name);
}
store.close();
process.stdout.write(JSON.stringify(names));
