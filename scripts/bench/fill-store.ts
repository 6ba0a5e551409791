/**
 * Fills a dstack home with N finished runs of two jobs each (plus a few active ones), for the `ps`
 * benchmark. Setup only, not timed. Usage: node --import tsx scripts/bench/fill-store.ts HOME N
 */
import { openStore } from '../../src/engine/store/sqlite.js';
import type { JobSpec } from '../../src/engine/types.js';

const [home, nText] = process.argv.slice(2);
if (!home) throw new Error('usage: fill-store.ts HOME N');
const n = Number(nText ?? 10_000);
const spec = (workflow: string): JobSpec => ({
  workflow,
  provider: 'bash',
  image: 'dstack-test/busybox:latest',
  command: ['/bin/sh', '-c', 'echo hello'],
  env: {},
  workingDir: '',
  ports: 0,
  artifacts: [{ path: 'out', mount: false }],
  cache: [],
  resources: {},
  variables: {},
  args: [],
  deps: [],
});
let t = Date.now() - n * 60_000;
const store = openStore(home, { now: () => t });
for (let i = 0; i < n; i++) {
  t += 60_000;
  const { jobs } = store.runs.createRun({
    workflow: 'train',
    owner: 'bench',
    backend: 'local',
    repo: { root: '/bench', isGit: false },
    args: [],
    jobs: [
      { spec: spec('prepare'), deps: [] },
      { spec: spec('train'), deps: [0] },
    ],
  });
  for (const j of jobs) {
    store.runs.setJobStatus(j.id, 'running');
    store.logs.appendLog(j.id, 'stdout', Buffer.from(`line ${i}\n`));
    store.runs.setJobStatus(j.id, 'done', { exitCode: 0 });
  }
}
store.close();
