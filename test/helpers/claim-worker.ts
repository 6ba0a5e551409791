/**
 * Child process for test/integration/claims-concurrency.test.ts:
 *   node --import tsx test/helpers/claim-worker.ts HOME JOB_ID RUN START_AT_MS
 * Waits until START_AT_MS so every worker claims at the same moment, claims one fingerprint for its
 * job, and prints whether it took it ("taken") or who holds it ("held by JOB").
 */
import { hostname } from 'node:os';
import { openStore } from '../../src/engine/store/sqlite.js';
import { asJobId, asRunName, type Fingerprint } from '../../src/engine/types.js';

const [home, job, run, startArg] = process.argv.slice(2);
if (!home || !job || !run || !startArg) throw new Error('usage: claim-worker.ts HOME JOB_ID RUN START_AT_MS');

const store = openStore(home);
const startAt = Number(startArg);
const wait = startAt - Date.now() - 20;
if (wait > 0) await new Promise((r) => setTimeout(r, wait));
while (Date.now() < startAt); // timers are coarse; spin the last few ms so the workers claim together

const r = store.claims.claim('c'.repeat(64) as Fingerprint, { job: asJobId(job), run: asRunName(run), pid: process.pid, hostname: hostname() }, () => false);
store.close();
process.stdout.write(r.taken ? 'taken' : `held by ${r.holder.job}`);
