// `dstack run target --dry-run` of a fully cached 1,000-workflow DAG, against `node -e 0`.
//
// The project: 10 layers of 100 trivial busybox workflows, each depending on 2 of the layer before,
// and `target` depending on the whole last layer (1,001 workflows). It is made "fully cached" by
// running it once for real (setup, not timed: 1,001 containers, about 4–5 minutes here at the
// executor's default parallelism of 2), then kept under the bench folder with its own dstack home,
// and checked before every measurement: if anything but `target` would run (the image was rebuilt,
// dstack fingerprints differently now), the setup runs again. `target` itself is the named
// workflow, so it "runs" unless `--reuse`: deciding it costs the same (fingerprint, one look-up).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, dstack, image, interleave, ms, save, time as timeIt } from './lib.mjs';

const LAYERS = 10;
const WIDTH = 100;
const dir = join(cacheDir, 'dag');
const project = join(dir, 'project');
const home = join(dir, 'home');
const marker = join(dir, 'ready.json');
const env = { ...process.env, DSTACK_HOME: home };

export function workflowsYaml(layers = LAYERS, width = WIDTH) {
  let y = 'workflows:\n';
  for (let l = 0; l < layers; l++) {
    for (let i = 0; i < width; i++) {
      y += `  - name: w${l}-${i}\n    image: ${image}\n    commands:\n      - echo ${l}-${i}\n`;
      if (l > 0) y += `    deps:\n      - w${l - 1}-${i}\n      - w${l - 1}-${(i + 1) % width}\n`;
    }
  }
  y += `  - name: target\n    image: ${image}\n    commands:\n      - echo done\n    deps:\n`;
  for (let i = 0; i < width; i++) y += `      - w${layers - 1}-${i}\n`;
  return y;
}

function dryRun(extra = []) {
  const r = spawnSync(dstack, ['run', 'target', '--dry-run', '--json', ...extra], { cwd: project, env, encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`dry run failed: ${r.stderr}`);
  return JSON.parse(r.stdout).jobs;
}

const uncached = () => dryRun().filter((j) => j.workflow !== 'target' && j.action !== 'cached');

/** Makes (or re-makes) the cached project; returns what the setup cost, or the marker's record of it. */
function setup(log) {
  const yaml = workflowsYaml();
  const fresh = !existsSync(marker) || readFileSync(join(project, '.dstack/workflows.yaml'), 'utf8') !== yaml;
  if (fresh) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(project, '.dstack'), { recursive: true });
    writeFileSync(join(project, '.dstack/workflows.yaml'), yaml);
  } else {
    const left = uncached();
    if (left.length === 0) return JSON.parse(readFileSync(marker, 'utf8'));
    log(`dag: ${left.length} jobs no longer cached (e.g. ${left[0].workflow}); running the DAG again`);
  }
  log(`dag: setup — running the ${LAYERS * WIDTH + 1}-workflow DAG once for real (about 5 minutes)…`);
  const t = Date.now();
  const r = spawnSync(dstack, ['run', 'target'], { cwd: project, env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`dag setup run failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const record = { workflows: LAYERS * WIDTH + 1, setupSeconds: (Date.now() - t) / 1000, at: new Date().toISOString() };
  const left = uncached();
  if (left.length) throw new Error(`dag setup: ${left.length} jobs still not cached after a full run`);
  writeFileSync(marker, `${JSON.stringify(record)}\n`);
  log(`dag: setup took ${record.setupSeconds.toFixed(0)} s`);
  return record;
}

export async function run({ rounds = 15, log = console.error } = {}) {
  const made = setup(log);
  const opts = { cwd: project, env };
  const { samples, medians } = interleave(rounds, {
    dryRun: () => timeIt(dstack, ['run', 'target', '--dry-run'], opts),
    dryRunReuse: () => timeIt(dstack, ['run', 'target', '--dry-run', '--reuse'], opts),
    node: () => timeIt(process.execPath, ['-e', '0']),
  });
  const figures = {
    command: `cd ${project} && DSTACK_HOME=${home} dstack run target --dry-run`,
    workflows: made.workflows,
    setupSeconds: made.setupSeconds,
    rounds,
    medianMs: medians,
    ratios: { dryRunVsNode: medians.dryRun / medians.node },
    samplesMs: samples,
  };
  const file = save('dag', figures);
  return {
    file,
    rows: [
      {
        name: `dag: run target --dry-run (${made.workflows} wf, cached)`,
        value: ms(medians.dryRun),
        baseline: `node -e 0 ${ms(medians.node)}`,
        ratio: medians.dryRun / medians.node,
        target: '< 100 ms',
        ok: medians.dryRun < 100,
      },
      {
        name: '  … with --reuse (target cached too)',
        value: ms(medians.dryRunReuse),
        baseline: `node -e 0 ${ms(medians.node)}`,
        ratio: medians.dryRunReuse / medians.node,
        target: '< 100 ms',
        ok: medians.dryRunReuse < 100,
      },
    ],
  };
}
